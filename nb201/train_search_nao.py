"""NAO without weight sharing on NAS-Bench-201 (`nb201.task`): every candidate trained alone.

    scripts/train_search.sh nb201 --mode=nao --config=smoke --output_dir=runs/nb201_nao_smoke
"""

from nao_tf.commands import standalone_search

if __name__ == "__main__":
    from nb201.task import TASK

    standalone_search.main(TASK)
