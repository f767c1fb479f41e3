using Qed.Format;
using Qed.IO;

namespace Qed.Image;

/// <summary>
/// The header as it is on disk, as an immutable snapshot that requests read without a lock.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Readers take <see cref="Current"/>: one volatile read of a reference, never a torn header.</item>
/// <item>Every change goes through <see cref="UpdateAsync"/>: under the header gate it rewrites the first sector
/// (bytes 64..511 kept, as QEMU does), flushes, and only then publishes the new snapshot, so what readers see is
/// always durable. A failed write or flush publishes nothing.</item>
/// </list>
/// </remarks>
internal sealed class HeaderState : IDisposable
{
    private readonly FileAccessor _file;
    /// <summary>Serializes header rewrites.</summary>
    private readonly AsyncGate _gate = new();
    private HeaderSnapshot _current;

    public HeaderState(FileAccessor file, QedHeader header)
    {
        _file = file;
        _current = new HeaderSnapshot(header);
    }

    /// <summary>The header last written and flushed.</summary>
    public HeaderSnapshot Current => Volatile.Read(ref _current);

    /// <summary>
    /// Applies <paramref name="change"/> to the current header; when that changes anything, writes the header sector,
    /// flushes and publishes. Returns true when it wrote.
    /// </summary>
    public async ValueTask<bool> UpdateAsync(Func<QedHeader, QedHeader> change, bool useAsync, CancellationToken cancellationToken)
    {
        await _gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            var header = change(Current.Header);
            if (header == Current.Header)
            {
                return false;
            }
            byte[] sector = new byte[HeaderLayout.SectorSize];
            await _file.ReadZeroPaddedAsync(sector, 0, useAsync, cancellationToken).ConfigureAwait(false);
            header.WriteTo(sector);
            await _file.WriteAsync(sector, 0, useAsync, cancellationToken).ConfigureAwait(false);
            await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
            Volatile.Write(ref _current, new HeaderSnapshot(header));
            return true;
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>
    /// Under the header gate, computes the new header from the current one with <paramref name="change"/> (which may refuse by
    /// throwing), lets <paramref name="write"/> put it on disk its own way (it must flush), and only
    /// then publishes it. For rewrites that are more than the first sector (a new backing file name).
    /// </summary>
    public async ValueTask ReplaceAsync(Func<QedHeader, QedHeader> change, Func<QedHeader, ValueTask> write, bool useAsync, CancellationToken cancellationToken)
    {
        await _gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            var header = change(Current.Header);
            await write(header).ConfigureAwait(false);
            Volatile.Write(ref _current, new HeaderSnapshot(header));
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <inheritdoc />
    public void Dispose() => _gate.Dispose();
}

/// <summary>One published header with the values requests derive from it.</summary>
internal sealed class HeaderSnapshot
{
    public HeaderSnapshot(QedHeader header)
    {
        Header = header;
        Size = (long)header.ImageSize;
    }

    /// <summary>The header fields.</summary>
    public QedHeader Header { get; }

    /// <summary>The virtual size in bytes (validated at open to fit a long).</summary>
    public long Size { get; }

    /// <summary>True when the need-check bit is set.</summary>
    public bool NeedsCheck => Header.NeedsCheck;
}
