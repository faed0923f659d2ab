"""Neural diff updates: train a model update as a sparse or hashed diff from the deployed model, ship
only the diff (:mod:`~fairspeech.updates.format`), and check per cohort before it ships
(:mod:`~fairspeech.updates.check`). Training goes through the ASR loop's hooks (:mod:`~fairspeech.updates.train`);
``fairspeech diff create|apply|inspect`` is :mod:`~fairspeech.updates.cli`; the experiment is
``recipes/neural_diff/local/chain.py``."""
