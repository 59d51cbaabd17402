"""Applications on top of the engine: the CLI, the editor, the benchmark, the demo, the doctor."""
