using Qed.IO;

namespace Qed.Tests.Crash;

/// <summary>A file layer that fails or tears the Nth write, or fails the Nth flush, once; otherwise passes through.</summary>
internal sealed class FaultyFileAccessor : FileAccessor
{
    private readonly FileAccessor _inner;
    private int _writesLeft;
    private int _flushesLeft;
    private readonly bool _tear;

    /// <param name="inner">The real file.</param>
    /// <param name="failWrite">1-based index of the write to fail, or 0.</param>
    /// <param name="failFlush">1-based index of the flush to fail, or 0.</param>
    /// <param name="tear">Write the first half of the failing write before failing.</param>
    public FaultyFileAccessor(FileAccessor inner, int failWrite, int failFlush, bool tear)
    {
        _inner = inner;
        _writesLeft = failWrite;
        _flushesLeft = failFlush;
        _tear = tear;
    }

    /// <summary>True once the fault has fired.</summary>
    public bool Fired { get; private set; }

    public override string Path => _inner.Path;

    public override bool IsReadOnly => _inner.IsReadOnly;

    public override long GetLength() => _inner.GetLength();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _inner.ReadAsync(buffer, offset, useAsync, cancellationToken);

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        if (_writesLeft > 0 && --_writesLeft == 0)
        {
            Fired = true;
            if (_tear && buffer.Length > 1)
            {
                await _inner.WriteAsync(buffer[..(buffer.Length / 2)], offset, useAsync, cancellationToken);
            }
            throw new IOException($"injected write failure at offset {offset}");
        }
        await _inner.WriteAsync(buffer, offset, useAsync, cancellationToken);
    }

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken)
    {
        if (_flushesLeft > 0 && --_flushesLeft == 0)
        {
            Fired = true;
            throw new IOException("injected flush failure");
        }
        return _inner.FlushAsync(useAsync, cancellationToken);
    }

    public override void SetLength(long length) => _inner.SetLength(length);

    public override void Dispose() => _inner.Dispose();
}
