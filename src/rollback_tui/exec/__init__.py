"""Command execution shared by probes and actions: argv and `${VAR}` resolution, local and SSH processes."""
