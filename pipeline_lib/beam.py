"""Beam pipeline options from the config: the runner is configuration, not code."""

import os


def pipeline_options(config, num_rows: int, temp_dir: str):
    from apache_beam.options.pipeline_options import PipelineOptions

    beam = config.beam
    args = list(beam.pipeline_args)
    if not any(a.startswith("--runner") for a in args) or "--runner=DirectRunner" in args:
        mode = beam.direct_running_mode
        if mode == "auto":
            mode = "multi_processing" if num_rows >= beam.multi_process_min_rows else "in_memory"
        args.append(f"--direct_running_mode={mode}")
        if mode != "in_memory":
            args.append(f"--direct_num_workers={beam.direct_num_workers or os.cpu_count()}")
    if not any(a.startswith("--temp_location") for a in args):
        args.append(f"--temp_location={temp_dir}")
    return PipelineOptions(args)
