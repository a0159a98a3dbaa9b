"""Where faxes come from: email, hot folders and the CLI. Intake only writes jobs."""
