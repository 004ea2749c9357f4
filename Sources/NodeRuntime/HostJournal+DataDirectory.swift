import HostNetwork

extension HostJournal {
    /// The journal in a node's data directory.
    public convenience init(in directory: DataDirectory, key: HostJournalKey) throws(HostJournalError) {
        try self.init(path: directory.path + "/" + Self.fileName, key: key)
    }
}
