namespace Qed.IO;

/// <summary>
/// Passes every call through to the file it wraps, except that once a flush has failed every later flush fails too,
/// naming the first failure as its cause.
/// </summary>
/// <remarks>
/// After a failed fsync the kernel may already have marked the pages it could not write as clean (Linux does), so a
/// later fsync can succeed without writing them: that success would claim durability for writes that were lost. What
/// is on disk cannot be known again until the file is reopened, so no later flush may succeed; QEMU's file driver makes
/// flushes fail permanently in the same way. Reads and writes keep working: only durability is gone.
/// </remarks>
internal sealed class FlushFailureLatch : FileAccessor
{
    private readonly FileAccessor _inner;
    private IOException? _failure;

    public FlushFailureLatch(FileAccessor inner) => _inner = inner;

    /// <summary>The first flush failure, or null while every flush succeeded.</summary>
    public IOException? Failure => Volatile.Read(ref _failure);

    public override string Path => _inner.Path;

    public override bool IsReadOnly => _inner.IsReadOnly;

    public override long GetLength() => _inner.GetLength();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _inner.ReadAsync(buffer, offset, useAsync, cancellationToken);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _inner.WriteAsync(buffer, offset, useAsync, cancellationToken);

    public override ValueTask ZeroRangeAsync(long offset, long length, bool deallocate, bool useAsync, CancellationToken cancellationToken) =>
        _inner.ZeroRangeAsync(offset, length, deallocate, useAsync, cancellationToken);

    public override async ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken)
    {
        var failure = Failure;
        if (failure is not null)
        {
            throw new QedException($"An earlier flush of '{Path}' failed, so writes since the last successful flush may not be on disk: {failure.Message}", failure);
        }
        try
        {
            await _inner.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            Interlocked.CompareExchange(ref _failure, e, null);
            throw;
        }
    }

    public override void SetLength(long length) => _inner.SetLength(length);

    public override void Dispose() => _inner.Dispose();
}
