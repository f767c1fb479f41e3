using Qed.IO;

namespace Qed.Tests.PowerCut;

/// <summary>
/// An in-memory image file that logs every write (offset and bytes), every completed flush and every length change,
/// so that <see cref="CrashStateGenerator"/> can rebuild what a power cut at any moment could have left on disk.
/// </summary>
internal sealed class RecordingFileAccessor : FileAccessor
{
    private readonly MemoryFileAccessor _inner;
    private readonly List<FileOp> _log = [];
    private readonly object _sync = new();

    public RecordingFileAccessor(string path, byte[] initial)
    {
        _inner = new MemoryFileAccessor(path, initial.ToArray());
    }

    public override string Path => _inner.Path;

    public override bool IsReadOnly => false;

    /// <summary>Number of operations logged so far.</summary>
    public int Count
    {
        get
        {
            lock (_sync)
            {
                return _log.Count;
            }
        }
    }

    /// <summary>A copy of the log.</summary>
    public IReadOnlyList<FileOp> Log
    {
        get
        {
            lock (_sync)
            {
                return _log.ToArray();
            }
        }
    }

    /// <summary>The file as it is now (every logged operation applied in order).</summary>
    public byte[] ToArray() => _inner.ToArray();

    public override long GetLength() => _inner.GetLength();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _inner.ReadAsync(buffer, offset, useAsync, cancellationToken);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        if (buffer.IsEmpty)
        {
            return ValueTask.CompletedTask;
        }
        // The memory file completes synchronously: applying and logging under one lock keeps the log in file order.
        lock (_sync)
        {
            _inner.WriteAsync(buffer, offset, useAsync: false, cancellationToken).GetAwaiter().GetResult();
            _log.Add(FileOp.Write(offset, buffer.Span));
        }
        return ValueTask.CompletedTask;
    }

    public override async ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken)
    {
        // Logged once it has completed: a crash during a flush is a crash before it.
        await _inner.FlushAsync(useAsync, cancellationToken);
        lock (_sync)
        {
            _log.Add(FileOp.Flush());
        }
    }

    public override void SetLength(long length)
    {
        lock (_sync)
        {
            _inner.SetLength(length);
            _log.Add(FileOp.SetLength(length));
        }
    }

    public override void Dispose() => _inner.Dispose();
}
