"""One rank of the two-process test of configs/multi_gpu_train.json (run by torchrun from test_distributed.py):
stage 2 as the documented torchrun command runs it, then every rank's student weights are gathered so the test can
check that DistributedDataParallel kept them equal."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    out, overrides = Path(sys.argv[1]), json.loads(sys.argv[2])
    configs = [str(REPO / "configs" / "stage2.json"), str(REPO / "configs" / "multi_gpu_train.json")]
    wf = ConfigWorkflow(config_file=configs, workflow_type="train", run_id="training", **overrides)
    wf.initialize()
    wf.run()
    net = wf.parser.get_parsed_content("network").module
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    batch = wf.parser.get_parsed_content("train#dataset")[0]["u_image"]
    batches = [torch.zeros_like(batch) for _ in range(dist.get_world_size())]
    dist.all_gather(batches, batch)
    if dist.get_rank() == 0:
        report = {
            "world_size": dist.get_world_size(),
            "iteration": wf.parser.get_parsed_content("train#trainer").state.iteration,
            "max_weight_difference": max(float((g - gathered[0]).abs().max()) for g in gathered),
            "same_first_unlabelled_image": all(torch.equal(b, batches[0]) for b in batches[1:]),
        }
        out.write_text(json.dumps(report))
    wf.finalize()


if __name__ == "__main__":
    main()
