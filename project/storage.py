from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed names once `collectstatic` has written its manifest
    (a production start); plain names before that, served from the apps'
    folders, so that a local run works without collecting first."""

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            return name
        return super().stored_name(name)
