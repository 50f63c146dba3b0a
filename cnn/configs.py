"""Flag presets reproducing the original final-training scripts (`--config`).

`nao_ws`: `NAO-WS/cnn/train_final.sh` — the NAO-WS cell, N = 5, F = 36, 630 epochs, batch 144,
SGDR 0.05 -> 0.0001 (T_0 = 10, T_mul = 2), Nesterov momentum, l2_reg 2e-4 on sum(w^2),
drop-path keep 0.6, classifier keep 0.8, aux head 0.4, no cutout, all 50k training images.

`naonet`: `NAO/cnn/train_cifar10_final.sh` / `train_cifar100_final.sh` — NAONet, N = 6, F = 128,
600 epochs, batch 128, one cosine cycle 0.024 -> 0 (T_0 = 600, T_mul = 1, epoch-granular), plain
momentum, weight decay 5e-4 on sum(w^2)/2 (= l2_reg 2.5e-4), cutout 16, aux head 0.4; CIFAR-10:
drop-path keep 0.7, classifier keep 0.6; CIFAR-100: 0.6 and 0.8.

`nao_search`: `NAO/cnn/train_cifar10_search.sh`, the per-architecture schedule of NAO without
weight sharing — N = 3, F = 32, 25 epochs, batch 128, cosine 0.024 -> 0 with T_0 = 100 (a quarter
cycle in 25 epochs), plain momentum, weight decay 5e-4 on sum(w^2)/2, drop-path keep 0.7, no
classifier dropout, aux head 0.4, no cutout, the 45k/5k search split with validation every epoch.
It sets no architecture: `cnn.train_search_nao` trains every candidate with it, and
`train_final --config=nao_search --arch=...` trains one by hand.

`naonet_a_36`, `naonet_b_36`, `naonet_a_128`, `naonet_v2_36`: the NAO_pytorch recipes
(`NAO_V1/train_NAONet_{A_36,B_36,A_128_...}_cifar10.sh`, `NAO_V2/train_NAONet_V2_36_cifar10.sh`
with `train_cifar.py`'s defaults) — N = 6, 600 epochs, batch 128, evaluation batch 500, one
epoch-granular cosine 0.025 -> 0, plain momentum, classifier keep 0.6, aux head 0.4, cutout 16.
PyTorch's `weight_decay` wd is l2_reg = wd / 2 here: V1 wd 3e-4 (5e-4 for A-128), V2 5e-4;
drop-path keep 0.8 (0.7 for A-128). F = 36, or 128 for A-128 (which the original ran on 4 GPUs
with the same global batch).

`imagenet_mobile`: NAO_pytorch's `NAO_V1/train_NAONet_A_imagenet.sh` with `train_imagenet.py`'s
defaults — NAONet-A in the ImageNet network (N = 4, F = 42, 224x224: 1,244M multiply-adds, over
the 600M of the mobile setting, docs/cnn.md), 250 epochs, 128 images and
lr 0.1 per replica (the 4-GPU script: 512 and 0.4), lr times 0.97 every epoch, plain momentum 0.9,
label smoothing 0.1, wd 3e-5 (l2_reg 1.5e-5), aux head 0.4, gradient clip 5, no dropout or
drop-path (the script leaves both keep probabilities at 1.0); the validation images are the test
set, evaluated every epoch with the training batch.

A preset only sets defaults: flags given on the command line win.
"""

from typing import Any

# What the NAO_pytorch V1 and V2 CIFAR recipes share (`train_cifar.py` and its scripts).
_NAO_PYTORCH: dict[str, Any] = dict(
    num_cells=6, filters=36, epochs=600, batch_size=128, eval_batch_size=500, lr_schedule="sgdr",
    lr_max=0.025, lr_min=0.0, t0=600, t_mul=1, nesterov=False, grad_bound=5.0,
    drop_path_keep_prob=0.8, keep_prob=0.6, use_aux_head=True, aux_weight=0.4, cutout_size=16,
    split="final", eval_every_epochs=1)

CONFIGS: dict[str, dict[str, Any]] = {
    "nao_ws": dict(
        arch="nao_ws", num_cells=5, filters=36, epochs=630, batch_size=144, eval_batch_size=128,
        lr_schedule="sgdr", lr_max=0.05, lr_min=0.0001, t0=10, t_mul=2, nesterov=True,
        l2_reg=2e-4, grad_bound=5.0, drop_path_keep_prob=0.6, keep_prob=0.8, use_aux_head=True,
        aux_weight=0.4, cutout_size=0, split="final", eval_every_epochs=1),
    "naonet": dict(
        arch="naonet", num_cells=6, filters=128, epochs=600, batch_size=128, eval_batch_size=100,
        lr_schedule="sgdr", lr_max=0.024, lr_min=0.0, t0=600, t_mul=1, nesterov=False,
        l2_reg=2.5e-4, grad_bound=5.0, drop_path_keep_prob=0.7, keep_prob=0.6, use_aux_head=True,
        aux_weight=0.4, cutout_size=16, split="final", eval_every_epochs=1),
    "naonet_a_36": {**_NAO_PYTORCH, "arch": "naonet_a", "l2_reg": 1.5e-4},
    "naonet_b_36": {**_NAO_PYTORCH, "arch": "naonet_b", "l2_reg": 1.5e-4},
    "naonet_a_128": {**_NAO_PYTORCH, "arch": "naonet_a", "filters": 128, "l2_reg": 2.5e-4,
                     "drop_path_keep_prob": 0.7},
    "naonet_v2_36": {**_NAO_PYTORCH, "arch": "naonet_v2", "l2_reg": 2.5e-4},
    "imagenet_mobile": dict(
        arch="naonet_a", dataset="imagenet", network="imagenet", image_size=224, num_cells=4,
        filters=42, epochs=250, batch_size=128, eval_batch_size=128, batch_per_replica=True,
        lr_schedule="step", lr_max=0.1, gamma=0.97, decay_period=1, nesterov=False,
        momentum=0.9, label_smoothing=0.1, l2_reg=1.5e-5, grad_bound=5.0, keep_prob=1.0,
        drop_path_keep_prob=1.0, use_aux_head=True, aux_weight=0.4, cutout_size=0,
        split="final", eval_every_epochs=1),
    "nao_search": dict(
        num_cells=3, filters=32, epochs=25, batch_size=128, eval_batch_size=100,
        lr_schedule="sgdr", lr_max=0.024, lr_min=0.0, t0=100, t_mul=1, nesterov=False,
        l2_reg=2.5e-4, grad_bound=5.0, drop_path_keep_prob=0.7, keep_prob=1.0, use_aux_head=True,
        aux_weight=0.4, cutout_size=0, split="search", num_valid=5000, eval_every_epochs=1,
        network="nao_ws", standardization="dataset"),
}

# Per-dataset changes to a preset (the original CIFAR-100 script).
DATASET_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("naonet", "cifar100"): dict(drop_path_keep_prob=0.6, keep_prob=0.8),
}

