"""The detect stage (spec 002 §9, §10): the detector catalogue and the scoring/emission model.

Pure code: ``catalogue.evaluate``/``detect`` turn one lattice row and its market frame into
triggers, ``scoring.Scorer.step`` turns a minute's triggers into events and suppressions.
"""
