"""Train a NAS-Bench-201 cell from scratch in the benchmark's network (`nb201.task`).

    scripts/train_final.sh nb201 --data_dir=data/cifar-10-batches-py --output_dir=runs/nb201_final \
        --arch='|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|'
"""

from nao_tf.commands import final_training

if __name__ == "__main__":
    from nb201.task import TASK

    final_training.main(TASK)
