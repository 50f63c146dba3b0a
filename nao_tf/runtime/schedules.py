"""Learning-rate schedules of the original release, as pure functions of the step (SGDR, one
cosine, and the ImageNet trainer's step decay).

SGDR (Loshchilov & Hutter) as the original computes it: epoch-granular, restarting after T_0 epochs,
each cycle T_mul times longer than the last:
    lr = lr_min + (lr_max - lr_min) * (1 + cos(pi * T_cur / T_i)) / 2
"""

import math

import keras
import tensorflow as tf


class SGDR(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing with warm restarts, constant within an epoch (as the original)."""

    def __init__(self, lr_max: float, lr_min: float, t0: int, t_mul: int, steps_per_epoch: int):
        self.lr_max, self.lr_min = float(lr_max), float(lr_min)
        self.t0, self.t_mul = int(t0), int(t_mul)
        self.steps_per_epoch = int(steps_per_epoch)

    def __call__(self, step):
        epoch = tf.cast(step, tf.float32) // float(self.steps_per_epoch)
        if self.t_mul == 1:
            t_i = tf.constant(float(self.t0))
            t_cur = tf.math.floormod(epoch, t_i)
        else:
            # Cycle k starts at epoch t0 * (t_mul^k - 1) / (t_mul - 1).
            k = tf.floor(tf.math.log(epoch * (self.t_mul - 1) / self.t0 + 1.0)
                         / math.log(self.t_mul) + 1e-6)
            start = self.t0 * (tf.pow(float(self.t_mul), k) - 1.0) / (self.t_mul - 1)
            t_i = self.t0 * tf.pow(float(self.t_mul), k)
            t_cur = epoch - start
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1.0 + tf.cos(math.pi * t_cur / t_i))

    def get_config(self):
        return dict(lr_max=self.lr_max, lr_min=self.lr_min, t0=self.t0, t_mul=self.t_mul,
                    steps_per_epoch=self.steps_per_epoch)


class Cosine(keras.optimizers.schedules.LearningRateSchedule):
    """Single cosine decay from lr_max to lr_min over `total_steps`, per step."""

    def __init__(self, lr_max: float, lr_min: float, total_steps: int):
        self.lr_max, self.lr_min, self.total_steps = float(lr_max), float(lr_min), int(total_steps)

    def __call__(self, step):
        frac = tf.minimum(tf.cast(step, tf.float32) / float(self.total_steps), 1.0)
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1.0 + tf.cos(math.pi * frac))

    def get_config(self):
        return dict(lr_max=self.lr_max, lr_min=self.lr_min, total_steps=self.total_steps)


class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr_max * gamma ** (epoch // decay_period), constant within an epoch (PyTorch's `StepLR`,
    as NAO_pytorch's ImageNet trainer steps it once an epoch)."""

    def __init__(self, lr_max: float, gamma: float, decay_period: int, steps_per_epoch: int):
        self.lr_max, self.gamma = float(lr_max), float(gamma)
        self.decay_period, self.steps_per_epoch = int(decay_period), int(steps_per_epoch)

    def __call__(self, step):
        epoch = tf.cast(step, tf.float32) // float(self.steps_per_epoch)
        return self.lr_max * tf.pow(self.gamma, epoch // float(self.decay_period))

    def get_config(self):
        return dict(lr_max=self.lr_max, gamma=self.gamma, decay_period=self.decay_period,
                    steps_per_epoch=self.steps_per_epoch)
