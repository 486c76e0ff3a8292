"""`dfm studio`: a local web page that shows a scene live while it is edited, previewed, rendered and swept.

The page (static/: plain HTML, CSS and ES2017 JavaScript, with uPlot vendored for the charts) talks to a
small aiohttp server bound to 127.0.0.1. The server watches the scene file and the output folder with
watchfiles and pushes what changed to the page as server-sent events. One concern per module:

- `scene.py`: the scene compiled into what the page draws (columns, prompt bands, beats) or its diagnostics;
- `preview.py`: the motion preview (camera over the test card), built in a subprocess as small JPEGs;
- `render_watch.py`: the output folder's state (frames landed, progress and ETA, what was kept, the video);
- `renders.py`: a render started from the page, as a `dfm render` subprocess;
- `sweep.py`: a `dfm batch --vary` folder as an X/Y/Z grid;
- `files.py`: which files the page may read (the soundtrack, the output and sweep folders), nothing else;
- `server.py`: the routes, the watchers and the event stream.

The studio never imports torch (a render runs in its own process), never reaches the network, and writes no
file of the user's: only `dfm render`, when the page starts one, writes into the output folder, under the
same rules as on the command line.
"""

DEFAULT_PORT = 8765
LOOPBACK = ("127.0.0.1", "localhost", "::1")  # names of this machine only: the default, and no rebinding
