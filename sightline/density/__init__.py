"""Crowd density: people per zone across overlapping cameras, heatmaps and alerts.

Ray-free. Each camera reports, frame by frame, where its tracked people stand on the
ground (:class:`~sightline.density.counting.GroundFrame`); the coordinator's
:class:`~sightline.density.counting.DensityCounter` merges the cameras' views of one
moment so a person seen twice counts once, counts people per zone per second, measures
how much of each zone the cameras actually see, and feeds the zone alerts
(:mod:`sightline.density.alerts`). Per-second rows land in the store
(``zone_counts``, ``camera_counts``, ``ground_points``, ``density_alerts``) and are
queried with :mod:`sightline.density.queries`; :mod:`sightline.density.heatmap` draws
occupancy maps.
"""
