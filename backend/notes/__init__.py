"""Clinical session notes: end-to-end encrypted, amended never edited, shared by adding keys."""
