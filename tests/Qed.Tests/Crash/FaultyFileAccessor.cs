using System.Buffers.Binary;
using Qed.Format;
using Qed.IO;
using Qed.Tests.Crash.Faults;

namespace Qed.Tests.Crash;

/// <summary>
/// A file layer that counts the writes and flushes passing through it (by session phase) and can make one of them
/// fail: the Nth write fails (or is torn: its first half is written, then it fails), or the Nth flush fails. The fault
/// fires once; everything else passes through. It records what it injected, so a test can prove the fault fired and
/// that the error its caller saw is that fault.
/// </summary>
internal sealed class FaultyFileAccessor : FileAccessor
{
    private readonly FileAccessor _inner;
    private readonly FaultKind _kind;
    private readonly int _at;
    private readonly int[] _writes = new int[3];
    private readonly int[] _flushes = new int[3];
    private int _writeCount;
    private int _flushCount;
    private int _disposed;

    /// <param name="inner">The real file.</param>
    /// <param name="kind">What to inject, or <see cref="FaultKind.None"/> to count only.</param>
    /// <param name="at">1-based index, over the whole life of this accessor, of the write or flush that fails.</param>
    public FaultyFileAccessor(FileAccessor inner, FaultKind kind = FaultKind.None, int at = 0)
    {
        if (kind != FaultKind.None && at < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(at), at, "A fault needs a 1-based index.");
        }
        _inner = inner;
        _kind = kind;
        _at = at;
    }

    /// <summary>The phase the test is in; counts and the fault are attributed to it.</summary>
    public SessionPhase Phase { get; set; }

    /// <summary>The exception thrown by the fault, once it fired.</summary>
    public IOException? Injected { get; private set; }

    /// <summary>The phase in which the fault fired, once it did.</summary>
    public SessionPhase? FiredIn { get; private set; }

    /// <summary>What fired, for messages: kind, index and file offset.</summary>
    public string? FiredAt { get; private set; }

    /// <summary>
    /// True when, after a failed flush, a header sector without the need-check bit was written: the image claimed to be
    /// consistent on disk although it could no longer know what the disk holds.
    /// </summary>
    public bool ClearedNeedCheckAfterFailedFlush { get; private set; }

    /// <summary>True once <see cref="Dispose"/> ran (the handle was released).</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Writes issued in <paramref name="phase"/> (including a failing one).</summary>
    public int WritesIn(SessionPhase phase) => Volatile.Read(ref _writes[(int)phase]);

    /// <summary>Flushes issued in <paramref name="phase"/> (including a failing one).</summary>
    public int FlushesIn(SessionPhase phase) => Volatile.Read(ref _flushes[(int)phase]);

    public override string Path => _inner.Path;

    public override bool IsReadOnly => _inner.IsReadOnly;

    public override long GetLength() => _inner.GetLength();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _inner.ReadAsync(buffer, offset, useAsync, cancellationToken);

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _writes[(int)Phase]);
        int index = Interlocked.Increment(ref _writeCount);
        if (_kind == FaultKind.FailFlush && Injected is not null && offset == 0 && buffer.Length >= HeaderLayout.Size)
        {
            var features = (QedFeatures)BinaryPrimitives.ReadUInt64LittleEndian(buffer.Span[HeaderLayout.FeaturesOffset..]);
            ClearedNeedCheckAfterFailedFlush |= (features & QedFeatures.NeedCheck) == 0;
        }
        if (_kind is FaultKind.FailWrite or FaultKind.TearWrite && index == _at)
        {
            if (_kind == FaultKind.TearWrite && buffer.Length > 1)
            {
                await _inner.WriteAsync(buffer[..(buffer.Length / 2)], offset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            throw Fire($"{_kind} #{index} ({buffer.Length} bytes at 0x{offset:x})", $"injected {(_kind == FaultKind.TearWrite ? "torn" : "failed")} write #{index} of {buffer.Length} bytes at offset {offset}");
        }
        await _inner.WriteAsync(buffer, offset, useAsync, cancellationToken).ConfigureAwait(false);
    }

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _flushes[(int)Phase]);
        int index = Interlocked.Increment(ref _flushCount);
        if (_kind == FaultKind.FailFlush && index == _at)
        {
            throw Fire($"{_kind} #{index}", $"injected flush failure #{index}");
        }
        return _inner.FlushAsync(useAsync, cancellationToken);
    }

    public override void SetLength(long length) => _inner.SetLength(length);

    public override void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _inner.Dispose();
        }
    }

    private IOException Fire(string where, string message)
    {
        var injected = new IOException(message);
        FiredAt = where;
        FiredIn = Phase;
        Injected = injected;
        return injected;
    }
}
