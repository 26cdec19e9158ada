"""The ATB op plugin (NNAL's ``libatb.so`` behind ``libop_plugin_atb.so``)."""
