"""Leaf package shared by everything else: settings, database, clock, errors, queue, blobs."""
