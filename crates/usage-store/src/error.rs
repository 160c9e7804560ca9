/// What can go wrong with the usage log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend we speak.
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// The database could not be reached or a pooled connection could not be had.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// Applying the embedded migrations failed.
    #[error("cannot apply database migrations: {0}")]
    Migration(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// Preparing the database's directory failed.
    #[error("cannot prepare the database directory: {0}")]
    Io(#[from] std::io::Error),
    /// The SQLite file the store opened was deleted or replaced while it ran: rows written
    /// since went (or would go) to a file nobody will read. The message names the path and
    /// what happened to it. Reconnecting opens (or creates) the file now at the path.
    #[error("the usage database file changed under the running store: {0}")]
    DatabaseReplaced(String),
    /// The dead-letter file could not be written: the records meant for it are still in hand.
    #[error("cannot write the dead-letter file {path}: {cause}")]
    DeadLetter {
        /// The dead-letter file.
        path: String,
        /// What failed.
        cause: String,
    },
    /// Another process holds the journal directory: two writers would interleave its records.
    #[error(
        "the usage journal in '{0}' is in use by another process; give each instance its own database.journal_dir"
    )]
    JournalInUse(String),
    /// A stored value no longer parses (the table was edited by hand).
    #[error("corrupt usage row: {0}")]
    Corrupt(String),
    /// A row with this key is already stored; the message names it (e.g. "budget 'team'").
    #[error("{0} already exists")]
    Exists(String),
    /// No row has this key; the message names it.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The row is at another version than the change was based on: someone changed it since.
    #[error("{what} is at version {current}, not {expected}")]
    VersionMoved {
        /// The row, named (e.g. "budget 'team'").
        what: String,
        /// The version the change was based on.
        expected: i64,
        /// The version it is at.
        current: i64,
    },
}

impl StoreError {
    /// True for the error [`crate::spawn_writer`] gives when another process holds the journal.
    pub fn is_journal_in_use(&self) -> bool {
        matches!(self, Self::JournalInUse(_))
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        Self::Connect(e.to_string())
    }
}
