using System.Collections.Concurrent;
using Qed.IO;

namespace Qed.Tests.Concurrency;

/// <summary>Passes every call through and counts the reads at each offset, optionally holding reads until released so that concurrent requests pile up.</summary>
internal sealed class CountingFileAccessor : FileAccessor
{
    private readonly FileAccessor _inner;

    public CountingFileAccessor(FileAccessor inner) => _inner = inner;

    /// <summary>Reads issued, by file offset.</summary>
    public ConcurrentDictionary<long, int> Reads { get; } = new();

    /// <summary>When set, reads wait for this event before touching the file.</summary>
    public ManualResetEventSlim? Gate { get; set; }

    public override string Path => _inner.Path;

    public override bool IsReadOnly => _inner.IsReadOnly;

    public override long GetLength() => _inner.GetLength();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        Reads.AddOrUpdate(offset, 1, (_, n) => n + 1);
        Gate?.Wait(cancellationToken);
        return _inner.ReadAsync(buffer, offset, useAsync, cancellationToken);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _inner.WriteAsync(buffer, offset, useAsync, cancellationToken);

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken) => _inner.FlushAsync(useAsync, cancellationToken);

    public override void SetLength(long length) => _inner.SetLength(length);

    public override void Dispose() => _inner.Dispose();
}
