"""The room: a scenario (bundled, synthesised or imported from recordings) and its real-time console replay."""
