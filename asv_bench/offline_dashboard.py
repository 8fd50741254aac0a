"""Make the published asv dashboard work with no internet.

``asv publish`` writes ``index.html`` with <script>/<link> tags that load
jQuery, Flot (+ time, selection, categories), flot-orderbars, stupidtable,
blueimp-md5 and Bootstrap from CDNs.  This copies the vendored copies
(``asv_bench/vendor``, unchanged npm packages with their licenses) next to the
page and rewrites each tag to the local file, dropping ``integrity`` and
``crossorigin`` (they do not apply to same-origin files).

    cd asv_bench && asv publish && python offline_dashboard.py [HTML_DIR]

The page must still be served over http (``asv preview``, or
``python -m http.server --bind 127.0.0.1`` in the html folder): browsers
refuse the dashboard's data requests under file://.
"""

import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR = os.path.join(HERE, "vendor")

# CDN file name (the end of the URL) -> local path under vendor/
LOCAL = {
    "jquery-3.3.1.min.js": "jquery/jquery.min.js",
    "jquery.flot.min.js": "flot/jquery.flot.js",
    "jquery.flot.time.min.js": "flot/jquery.flot.time.js",
    "jquery.flot.selection.min.js": "flot/jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "flot/jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "flot-orderbars/jquery.flot.orderBars.js",
    "stupidtable.min.js": "stupidtable/stupidtable.min.js",
    "md5.min.js": "blueimp-md5/md5.min.js",
    "bootstrap.min.js": "bootstrap/js/bootstrap.min.js",
    "bootstrap.min.css": "bootstrap/css/bootstrap.min.css",
}

TAG = re.compile(r'<(script|link)\b[^>]*?(src|href)="(https?://[^"]+)"[^>]*>', re.IGNORECASE)


def _rewrite_tag(match):
    tag, attr, url = match.group(1), match.group(2), match.group(3)
    name = url.rsplit("/", 1)[-1]
    if name not in LOCAL:
        return match.group(0)  # a link that is not a library (e.g. the asv project page)
    text = match.group(0).replace(url, "vendor/" + LOCAL[name])
    text = re.sub(r'\s+integrity="[^"]*"', "", text)
    text = re.sub(r'\s+crossorigin="[^"]*"', "", text)
    text = re.sub(r'\s+referrerpolicy="[^"]*"', "", text)
    return text


def make_offline(html_dir):
    """Copy vendor/ into html_dir and point index.html at it; returns the CDN URLs left (none expected)."""
    index = os.path.join(html_dir, "index.html")
    with open(index, encoding="utf-8") as f:
        page = f.read()
    page = TAG.sub(_rewrite_tag, page)
    dest = os.path.join(html_dir, "vendor")
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    shutil.copytree(VENDOR, dest)
    with open(index, "w", encoding="utf-8") as f:
        f.write(page)
    return [m.group(3) for m in TAG.finditer(page) if m.group(1).lower() == "script" or "stylesheet" in m.group(0)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    html_dir = argv[0] if argv else os.path.join(HERE, ".asv", "html")
    left = make_offline(html_dir)
    if left:
        print("still loaded from the network:", *left, sep="\n  ")
        return 1
    print(f"{html_dir}/index.html now loads its JavaScript and CSS from {html_dir}/vendor/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
