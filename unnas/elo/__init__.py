"""ELo for images (Piergiovanni, Angelova & Ryoo, "Evolving Losses for Unsupervised Video
Representation Learning", CVPR 2020): the weights of a multi-task pretext loss (task ``multi``,
:mod:`unnas.tasks.multi`) evolved with an unsupervised fitness (docs/elo.md).

* :mod:`unnas.elo.fitness`: the fitness, KL of the feature clusters' sizes to a Zipf prior;
* :mod:`unnas.elo.strategies`: CMA-ES, tournament selection, random and grid search (``STRATEGIES``);
* :mod:`unnas.elo.config`: ``evolve_defaults`` and validation;
* :mod:`unnas.elo.jobs`: candidates and evaluations as resumable jobs in the study's store;
* :mod:`unnas.elo.evaluate`: what one evaluation trains (and the fake evaluator);
* :mod:`unnas.elo.supernet`: an evaluation by a short DARTS search (``ELO.NETWORK supernet``);
* :mod:`unnas.elo.evolution`: the generation loop; :mod:`unnas.elo.outputs`, :mod:`unnas.elo.plots`:
  history, best weights, TensorBoard, pictures; :mod:`unnas.elo.report`: the evaluation of the result.

Nothing here is imported by this package's ``__init__``: the trainer imports the fitness alone.
"""
