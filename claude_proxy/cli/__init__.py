"""The `claude-proxy` commands: argv → config → server (`main`), or a tool (`run`, `doctor`, `logs`)."""
