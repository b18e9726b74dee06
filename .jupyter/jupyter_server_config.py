"""`make lab`'s server (and the browser test's): a .py notebook is read with the language_info its kernel
will report. JupyterLab writes the kernel's language_info into a notebook's metadata when the kernel
starts; the .py header does not carry it, so every notebook was marked modified right after opening and
closing it asked to save (writing the paired .ipynb)."""
import sys

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

LANGUAGE_INFO = {"name": "python", "version": sys.version.split()[0], "mimetype": "text/x-python",   # as ipykernel's
                 "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
                 "pygments_lexer": f"ipython{sys.version_info[0]}", "nbconvert_exporter": "python",
                 "file_extension": ".py"}


class ContentsManager(build_async_jupytext_contents_manager_class(AsyncLargeFileManager)):
    async def get(self, path, content=True, type=None, format=None, **kwargs):
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if model["type"] == "notebook" and content and path.endswith(".py"):
            model["content"].metadata.setdefault("language_info", LANGUAGE_INFO)
        return model


c.ServerApp.contents_manager_class = ContentsManager   # noqa: F821 (`c` is the config being loaded)
