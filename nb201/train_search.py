"""NAO with weight sharing on NAS-Bench-201 (`nb201.task`):

    scripts/train_search.sh nb201 --config=smoke --output_dir=runs/nb201_smoke
    scripts/train_search.sh nb201 --config=cpu --data_dir=../shared/data/cifar10-sample \
        --output_dir=runs/nb201_ws [--sampling=uniform]
"""

from nao_tf.commands import weight_sharing_search

if __name__ == "__main__":
    from nb201.task import TASK

    weight_sharing_search.main(TASK)
