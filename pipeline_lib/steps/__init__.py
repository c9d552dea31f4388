"""The pipeline steps. Each module has `run(config, output_dir, **inputs) -> dict` and runs in
the ML environment; heavy libraries are imported inside, so a step pays only for its own."""
