"""dslrun.runtime.data — see runtime/README.md."""
