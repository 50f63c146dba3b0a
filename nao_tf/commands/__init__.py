"""The command layer: flags and presets, run directories, the three command skeletons, tools."""
