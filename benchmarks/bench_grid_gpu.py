"""A Table 2 grid on one GPU: its cells one after another (`compare`) against all at once as submitit's local jobs
(`--executor slurm --slurm-cluster local --gpus-per-job 1`: every job sees the one GPU). Prints the wall time of each
and their ratio, checks that the two results.csv agree (timings aside), and writes the numbers to a JSON file.

    python benchmarks/bench_grid_gpu.py CIFAR_NPZ OUT_JSON [EPOCHS]
"""
import json, sys, tempfile, time
from pathlib import Path
import torch
from eb_study.compare import CompareGrid, compare
from eb_study.ebtrain import EBConfig
from eb_study.executors import ExecutorConfig

data, out_json = sys.argv[1], Path(sys.argv[2])
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
recipe = EBConfig(dataset=data, arch='vgg16', width=0.5, epochs=epochs, retrain_epochs=epochs // 2, batch_size=128)
grid = CompareGrid(methods=('eb', 'eb-reinit', 'ns', 'lt', 'snip', 'thinet'), ratios=(0.3, 0.5), seeds=(0,))
root = Path(tempfile.mkdtemp())
t = time.perf_counter(); seq = compare(recipe, grid, root / 'sequential', device='cuda'); t_seq = time.perf_counter() - t
ex = ExecutorConfig('slurm', slurm_cluster='local', gpus_per_job=1, cpus_per_job=2)
t = time.perf_counter(); par = compare(recipe, grid, root / 'jobs', device='cuda', ex=ex)
t_par = time.perf_counter() - t
timings = ['wall_s', 'energy_j', 'epoch_s', 'epoch_s_dense']
same = seq.drop(columns=timings).equals(par.drop(columns=timings))
acc_diff = float((seq.acc - par.acc).abs().max())
res = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, recipe=dict(arch='vgg16', width=0.5, epochs=epochs,
           retrain_epochs=epochs // 2, batch_size=128, data=Path(data).name), cells=len(seq), jobs_at_once=len(seq),
           sequential_s=round(t_seq, 1), jobs_s=round(t_par, 1), speedup=round(t_seq / t_par, 2),
           identical_results=bool(same), max_acc_diff=acc_diff)
out_json.write_text(json.dumps(res, indent=2) + '\n')
print(json.dumps(res, indent=2))
print(seq[['method', 'ratio', 'acc', 'eb_epoch', 'epoch_s', 'epoch_s_dense']].to_string())
