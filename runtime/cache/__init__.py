"""dslrun.runtime.cache — see runtime/README.md."""
