"""The interactive latent explorer (``vaekit explore RUN [RUN_B]``): a local web page that maps a run's
test codes in 2-D and decodes any point of the latent space on request (docs/explorer.md).

Modules, one job each: :mod:`~vaekit.explore.session` (a run loaded once: codes, KL order, decoding),
:mod:`~vaekit.explore.projections` (the 2-D maps and their way back to codes), :mod:`~vaekit.explore.views`
(how a decoded output is shown: image, table row, and where a recommender view plugs in),
:mod:`~vaekit.explore.app` (the WSGI routes and input validation), :mod:`~vaekit.explore.server`
(waitress, loopback by default) and ``static/`` (the page).
"""

from vaekit.explore.app import ExplorerApp
from vaekit.explore.server import serve
from vaekit.explore.session import ExploredRun

__all__ = ["ExploredRun", "ExplorerApp", "serve"]
