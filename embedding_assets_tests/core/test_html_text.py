"""HTML keeps every word apart as a browser renders it, its structure, and none of its scripts."""

import pytest

from embedding_assets.core.hashing import normalize_text
from embedding_assets.core.html_text import html_to_text


def text_of(html: str) -> str:
    return normalize_text(html_to_text(html))


@pytest.mark.parametrize(
    ("html", "phrase"),
    [
        ("<p>the condition <b>is</b> true and</p>", "the condition is true and"),
        ("<p>call <code>open()</code> with <a href='#'>a path</a>, then <em>read</em>.</p>", "call open() with a path"),
        ("<p>a<span> spaced </span>word</p>", "a spaced word"),
        ("<p>line one<br>line two</p>", "line one\nline two"),
        ("<p>many\n   spaces \t here</p>", "many spaces here"),
        ("<p>keep <i>glued</i>words glued</p>", "keep gluedwords glued"),  # no space in the source: none added
    ],
)
def test_text_beside_inline_tags_keeps_its_spaces(html: str, phrase: str) -> None:
    assert phrase in text_of(html)


def test_adjacent_table_cells_stay_apart_and_rows_are_lines() -> None:
    html = "<table><tr><th>name</th><th>value</th></tr><tr><td>alpha</td><td>beta</td></tr></table><p>after</p>"
    assert text_of(html) == "name | value\nalpha | beta\n\nafter"


def test_pre_keeps_its_line_breaks_and_indentation() -> None:
    html = "<p>Example:</p><pre>\ndef f(x):\n    if x:\n        return  1\n\nprint(f(1))\n</pre><p>Done.</p>"
    assert text_of(html) == "Example:\n\ndef f(x):\n    if x:\n        return  1\n\nprint(f(1))\n\nDone."


def test_headings_and_blocks_become_markdown_paragraphs() -> None:
    html = "<h1>Guide</h1><div>First <b>block</b>.</div><h2>Part <em>two</em></h2><ul><li>one</li><li>two</li></ul>"
    assert text_of(html) == "# Guide\n\nFirst block.\n\n## Part two\n\none\n\ntwo"


def test_scripts_styles_and_the_head_are_dropped() -> None:
    html = (
        "<html><head><title>Title text</title><style>p { color: red }</style>"
        "<script>var headSecret = 1;</script></head><body><p>Visible <script>alert('x')</script>words."
        "</p><noscript>enable js</noscript><style>.x{}</style><template><p>later</p></template></body></html>"
    )
    text = text_of(html)
    assert text == "Visible words."
    for hidden in ("Title text", "color", "headSecret", "alert", "enable js", ".x", "later"):
        assert hidden not in text


def test_a_head_left_open_does_not_hide_the_body() -> None:
    assert text_of("<html><head><title>t</title><body><p>The body <b>is</b> read.</p>") == "The body is read."


def test_entities_are_decoded() -> None:
    assert text_of("<p>Fish&nbsp;&amp;&nbsp;chips &lt;b&gt; &#233;t&eacute;</p>") == "Fish & chips <b> été"


def test_cells_left_open_still_make_rows_and_cells() -> None:
    assert text_of("<table><tr><td>a<td>b<tr><td>c<td>d</table><p>after") == "a | b\nc | d\n\nafter"


def test_paragraphs_inside_a_cell_stay_paragraphs_without_pushing_the_cells_apart() -> None:
    html = "<table><tr><td><p>Para one.</p><p>Para two.</p></td><td><p>side</p></td></tr></table>"
    assert text_of(html) == "Para one.\n\nPara two. | side"
