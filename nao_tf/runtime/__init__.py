"""How networks train and where: strategies, precision, schedules, the epoch loop, executors."""
