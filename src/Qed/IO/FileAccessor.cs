using System.Buffers;
using System.Runtime.CompilerServices;

namespace Qed.IO;

/// <summary>Positionless access to one host file: every read and write names its offset.</summary>
/// <remarks>An abstract seam so that tests can inject faults (failed or torn writes, failed flushes) under the engine. Every method takes <c>useAsync</c> so that one algorithm serves the sync and the async API.</remarks>
internal abstract class FileAccessor : IDisposable
{
    /// <summary>Path the file was opened from.</summary>
    public abstract string Path { get; }

    /// <summary>True when writes are refused.</summary>
    public abstract bool IsReadOnly { get; }

    /// <summary>Current length of the file in bytes.</summary>
    public abstract long GetLength();

    /// <summary>Reads up to <paramref name="buffer"/>.Length bytes at <paramref name="offset"/>; returns fewer only at the end of the file.</summary>
    public abstract ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Writes all of <paramref name="buffer"/> at <paramref name="offset"/>.</summary>
    public abstract ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Makes every completed write durable.</summary>
    public abstract ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken);

    /// <summary>
    /// Whether the range at <paramref name="offset"/> (at most <paramref name="length"/> bytes, inside the file) holds data
    /// or is a hole that reads as zeros, and how long that run is. The default knows no holes: everything is data.
    /// </summary>
    public virtual (bool IsData, long Length) ProbeAllocation(long offset, long length) => (true, length);

    /// <summary>True when <see cref="ProbeAllocation"/> can report holes (otherwise it reports everything as data).</summary>
    public virtual bool ReportsHoles => false;

    /// <summary>Sets the file length (extending with a hole or truncating).</summary>
    public abstract void SetLength(long length);

    /// <summary>
    /// Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros; with <paramref name="deallocate"/>
    /// the file system may free them (a hole), without it they stay allocated. The file length does not change, except
    /// that this default, which writes zeros, extends a file that ends inside the range.
    /// </summary>
    public virtual async ValueTask ZeroRangeAsync(long offset, long length, bool deallocate, bool useAsync, CancellationToken cancellationToken)
    {
        const int chunk = 1 << 20;
        byte[] zeros = ArrayPool<byte>.Shared.Rent((int)Math.Min(length, chunk));
        try
        {
            Array.Clear(zeros);
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(zeros.Length, length - done);
                await WriteAsync(zeros.AsMemory(0, n), offset + done, useAsync, cancellationToken).ConfigureAwait(false);
                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes, filling what lies past the end of the file with zeros.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadZeroPaddedAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = await ReadAsync(buffer[done..], offset + done, useAsync, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                buffer.Span[done..].Clear();
                return;
            }
            done += n;
        }
    }

    /// <inheritdoc />
    public abstract void Dispose();
}
