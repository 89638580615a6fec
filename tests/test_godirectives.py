"""helpers.godirectives: the //go: directives of the pinned gc compiler, computed from its noder source (C22)."""
import pytest

from helpers import godirectives as G

LEX = '''package noder

func pragmaFlag(verb string) ir.PragmaFlag {
	switch verb {
	case "go:nosplit":
		return ir.Nosplit
	case "go:noinline":
		return ir.Noinline
	}
	return 0
}

func (p *noder) pragcgo(pos syntax.Pos, text string) {
	switch verb {
	case "cgo_export_static", "cgo_export_dynamic":
	case "cgo_ldflag":
	}
}
'''
NODER = '''package noder

var allowedStdPragmas = map[string]bool{
	"go:cgo_ldflag": true,
	"go:generate":   true,
}

func (p *noder) pragma(pos syntax.Pos, blankLine bool, text string, old syntax.Pragma) syntax.Pragma {
	switch {
	case strings.HasPrefix(text, "go:linkname "), strings.HasPrefix(text, "go:linknamestd "):
	case text == "go:embed", strings.HasPrefix(text, "go:embed "):
	case strings.HasPrefix(text, "go:cgo_"):
	}
}
'''


def _tree(tmp_path, lex=LEX, noder=NODER):
    d = tmp_path / G.NODER
    d.mkdir(parents=True)
    (d / "lex.go").write_text(lex)
    (d / "noder.go").write_text(noder)
    return tmp_path


def test_synthetic_noder(tmp_path):
    d = G.compiler_directives(_tree(tmp_path))
    assert d == {"go:cgo_export_dynamic": "lex.go pragcgo", "go:cgo_export_static": "lex.go pragcgo",
                 "go:cgo_ldflag": "lex.go pragcgo", "go:embed": "noder.go pragma",
                 "go:generate": "noder.go allowedStdPragmas", "go:linkname": "noder.go pragma",
                 "go:linknamestd": "noder.go pragma", "go:noinline": "lex.go pragmaFlag",
                 "go:nosplit": "lex.go pragmaFlag"}
    fam = G.directive_families(d)
    assert fam["cgo"] == ["go:cgo_export_dynamic", "go:cgo_export_static", "go:cgo_ldflag"]
    assert fam["passed through"] == ["go:generate"]


def test_changed_source_is_refused(tmp_path):
    with pytest.raises(G.DirectiveError):
        G.compiler_directives(_tree(tmp_path, noder=NODER.replace("allowedStdPragmas", "other")))
    with pytest.raises(G.DirectiveError):
        G.compiler_directives(tmp_path / "missing")


def test_pinned_compiler_has_no_go_export():
    d = G.compiler_directives()
    assert "go:export" not in d
    assert {"go:linkname", "go:embed", "go:wasmexport", "go:wasmimport", "go:nosplit", "go:cgo_export_static",
            "go:cgo_ldflag", "go:generate"} <= set(d)


def test_wrong_goroot_type():
    with pytest.raises(G.DirectiveError):
        G.compiler_directives(42)
