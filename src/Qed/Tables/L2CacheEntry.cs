namespace Qed.Tables;

/// <summary>One cached L2 table: its file offset, its bytes (as on disk) and the count of requests using it.</summary>
/// <remarks>
/// An entry is created in the loading state by whoever misses first; others that find it wait for
/// <see cref="Ready"/>. The reference count is guarded by the cache's lock; the table bytes are read by
/// requests without a lock and changed only by the holder of the image's allocation lock.
/// </remarks>
internal sealed class L2CacheEntry
{
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public L2CacheEntry(ulong offset, byte[] table)
    {
        Offset = offset;
        Table = table;
    }

    /// <summary>File offset of the table.</summary>
    public ulong Offset { get; }

    /// <summary>The table's bytes, little-endian entries as on disk.</summary>
    public byte[] Table { get; }

    /// <summary>Requests holding the entry; guarded by the owning cache's lock.</summary>
    internal int References;

    /// <summary>True while the entry is in the cache's index.</summary>
    internal bool InIndex;

    /// <summary>Node in the cache's recency list while the entry is in the index.</summary>
    internal LinkedListNode<L2CacheEntry>? RecencyNode;

    /// <summary>Completes when the table's bytes are valid; faults if loading failed.</summary>
    public Task Ready => _ready.Task;

    internal void MarkReady() => _ready.TrySetResult();

    internal void MarkFailed(Exception error) => _ready.TrySetException(error);

    /// <summary>Reads entry <paramref name="index"/>.</summary>
    public ulong this[int index] => TableEntry.Read(Table, index);
}
