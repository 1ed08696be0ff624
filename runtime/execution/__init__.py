"""dslrun.runtime.execution — see runtime/README.md."""
