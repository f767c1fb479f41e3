using Qed.IO;

namespace Qed.Cli.Commands.Convert;

/// <summary>A device opened for writing in place, with the length the OS reports through <c>lseek</c> (its <c>stat</c> size is 0).</summary>
internal sealed class DeviceFileAccessor : FileAccessor
{
    private readonly FileAccessor _inner;
    private readonly long _length;

    /// <summary>Wraps <paramref name="inner"/>, an open device, whose size is <paramref name="length"/> bytes.</summary>
    public DeviceFileAccessor(FileAccessor inner, long length)
    {
        _inner = inner;
        _length = length;
    }

    /// <inheritdoc />
    public override string Path => _inner.Path;

    /// <inheritdoc />
    public override bool IsReadOnly => _inner.IsReadOnly;

    /// <inheritdoc />
    public override long GetLength() => _length;

    /// <inheritdoc />
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _inner.ReadAsync(buffer, offset, useAsync, cancellationToken);

    /// <inheritdoc />
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _inner.WriteAsync(buffer, offset, useAsync, cancellationToken);

    /// <inheritdoc />
    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken) => _inner.FlushAsync(useAsync, cancellationToken);

    /// <inheritdoc />
    public override void SetLength(long length) => throw new IOException("Cannot resize device files");

    /// <inheritdoc />
    public override void Dispose() => _inner.Dispose();
}
