"""A value and where it came from: the keyword arguments of a generated constructor call.

Every argument pwgen writes into a generated config says where its value came from, as
a comment after it: the sites file, pwgen's default, or the facts gathered on the site.
A `Setting` is one such pair; `Settings` keeps them in the order they are written and
becomes the `Call` that `pyrepr` renders (values as Python literals, so what a sites
file or facts hold reaches the generated module only through `repr`).

    settings = Settings()
    settings["label"] = Setting(site.label)                    # no comment
    settings.from_site(origin, "cores_per_worker")             # "sites.yaml" or "default"
    settings.given(origin, "account", "qos")                   # only those set
    settings["relay"] = Setting(facts.relay, f"{FACTS}: pwgen-relay on the login node")
    call = settings.call("SiteHighThroughputExecutor")
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pwgen.configgen.source import Call
from pwgen.sites import Site

#: How comments name the facts `pwgen provision` gathered on a site.
FACTS = "facts"


@dataclass(frozen=True)
class Setting:
    """One keyword argument's value and its provenance comment (None: no comment)."""

    value: Any
    source: str | None = None

    def noting(self, note: str, separator: str = ": ") -> "Setting":
        """The same value, its comment followed by `note` (why the value fits here)."""
        return Setting(self.value, f"{self.source}{separator}{note}")


@dataclass(frozen=True)
class SiteOrigin:
    """Where a site's own settings come from: `label` (the sites source, as comments name
    it) when the sites source gave them, else pwgen's default."""

    site: Site
    label: str

    def source_of(self, name: str) -> str:
        return self.label if name in self.site.model_fields_set else "default"

    def setting(self, name: str) -> Setting:
        """The site's field `name` and whether it was given or defaulted."""
        return Setting(getattr(self.site, name), self.source_of(name))


class Settings:
    """Ordered keyword arguments, each a `Setting`; `call()` renders them as a `Call`."""

    def __init__(self) -> None:
        self._items: dict[str, Setting] = {}

    def __setitem__(self, key: str, setting: Setting) -> None:
        self._items[key] = setting

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def update(self, other: "Settings") -> None:
        self._items.update(other._items)

    def from_site(self, origin: SiteOrigin, *names: str) -> None:
        """The site's fields `names`, each given in the sites source or defaulted."""
        for name in names:
            self._items[name] = origin.setting(name)

    def given(self, origin: SiteOrigin, *names: str) -> None:
        """The site's optional fields `names` that are set (None ones are left out)."""
        for name in names:
            value = getattr(origin.site, name)
            if value is not None:
                self._items[name] = Setting(value, origin.label)

    def call(self, name: str) -> Call:
        """The constructor call `name(**settings)`, each argument with its comment."""
        kwargs = {key: setting.value for key, setting in self._items.items()}
        comments = {key: s.source for key, s in self._items.items() if s.source is not None}
        return Call(name, kwargs, comments)
