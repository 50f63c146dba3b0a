"""NAS-Bench-201 (Dong & Yang, ICLR 2020) as a task: its network (`model`), the task (`task`), the
three commands' entry points. docs/nb201.md."""
