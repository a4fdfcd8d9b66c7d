"""The ground floor: what every stage may import and nothing here imports a stage.

``l1forge.core.artifacts`` writes and reads artifacts atomically; ``l1forge.core.executors`` gives the local process
pool or a Dask cluster that generation and scans run on. The fixed-point types and precision rules
(``l1forge.quantize``) are the ground floor's other half.
"""
