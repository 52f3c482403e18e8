"""One rank of the two-process test of configs/multi_gpu_train.json (run by torchrun from test_distributed.py):
stage 2 as the documented torchrun command runs it, then each rank saves its student weights and its first
unlabelled image to its own file, so the test can check that DistributedDataParallel kept the weights equal.

No collective runs here after the training's own: a gloo all_gather at the very end of a process raced
interpreter shutdown (the gloo thread freeing the finished work needs the GIL: SIGABRT, 'terminate called
without an active exception')."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    out_dir, overrides = Path(sys.argv[1]), json.loads(sys.argv[2])
    configs = [str(REPO / "configs" / "stage2.json"), str(REPO / "configs" / "multi_gpu_train.json")]
    wf = ConfigWorkflow(config_file=configs, workflow_type="train", run_id="training", **overrides)
    wf.initialize()
    wf.run()
    net = wf.parser.get_parsed_content("network").module
    report = {
        "world_size": dist.get_world_size(),
        "iteration": wf.parser.get_parsed_content("train#trainer").state.iteration,
        "weights": torch.cat([p.detach().flatten() for p in net.parameters()]),
        "first_unlabelled_image": wf.parser.get_parsed_content("train#dataset")[0]["u_image"],
    }
    torch.save(report, out_dir / f"rank{dist.get_rank()}.pt")
    wf.finalize()


if __name__ == "__main__":
    main()
