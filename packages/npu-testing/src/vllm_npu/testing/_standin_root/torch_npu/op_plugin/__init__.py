"""torch_npu's op plugin packages; the stand-in has only ``atb``'s loader state."""
