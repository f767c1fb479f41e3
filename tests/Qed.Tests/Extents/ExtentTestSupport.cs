using Qed.Extents;
using Qed.IO;
using Qed.Tests.Interop;

namespace Qed.Tests.Extents;

/// <summary>Shared helpers: our map in qemu-img map's terms, sparse raw files, and a device that counts the calls made to it.</summary>
internal static class ExtentTestSupport
{
    public const long MiB = 1024 * 1024;

    /// <summary>Our whole-device map, sync or async.</summary>
    public static async Task<List<Extent>> Map(BlockDevice device, bool useAsync)
    {
        if (!useAsync)
        {
            return ExtentMap.Enumerate(device).ToList();
        }
        var extents = new List<Extent>();
        await foreach (var extent in ExtentMap.EnumerateAsync(device))
        {
            extents.Add(extent);
        }
        return extents;
    }

    /// <summary>An extent as <c>qemu-img map --output=json</c> prints it.</summary>
    public static QemuMapExtent AsQemu(Extent e) =>
        new(e.Offset, e.Length, e.Depth, e.IsPresent, e.ReadsAsZeros, e.IsData, e.HostOffset >= 0 ? e.HostOffset : null);

    /// <summary>A raw file of <paramref name="length"/> bytes, a hole except for the given (offset, length, fill) writes.</summary>
    public static void SparseRaw(string path, long length, params (long Offset, int Length, byte Fill)[] writes)
    {
        using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite);
        RandomAccess.SetLength(handle, length);
        foreach (var (offset, count, fill) in writes)
        {
            byte[] data = new byte[count];
            Array.Fill(data, fill);
            RandomAccess.Write(handle, data, offset);
        }
    }
}

/// <summary>Passes every call to the device it wraps (whose backing chain it shows as its own), counting status requests and reads.</summary>
internal sealed class CountingDevice(BlockDevice inner) : BlockDevice
{
    private int _statusCalls;
    private int _reads;
    private long _bytesRead;

    public int StatusCalls => Volatile.Read(ref _statusCalls);

    public int Reads => Volatile.Read(ref _reads);

    public long BytesRead => Interlocked.Read(ref _bytesRead);

    public override long Size => inner.Size;

    public override bool IsReadOnly => inner.IsReadOnly;

    public override string FormatName => inner.FormatName;

    public override string FileName => inner.FileName;

    public override BlockDevice? Backing => inner.Backing;

    protected internal override ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _bytesRead, destination.Length);
        return inner.ReadCoreAsync(destination, offset, useAsync, cancellationToken);
    }

    protected internal override ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken) =>
        inner.WriteCoreAsync(source, offset, useAsync, cancellationToken);

    protected internal override ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken) =>
        inner.WriteZeroesCoreAsync(offset, length, mayUnmap, useAsync, cancellationToken);

    protected internal override ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken) =>
        inner.FlushCoreAsync(useAsync, cancellationToken);

    protected internal override ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _statusCalls);
        return inner.GetStatusCoreAsync(offset, length, useAsync, cancellationToken);
    }

    protected override ValueTask CloseCoreAsync(bool useAsync) => ValueTask.CompletedTask;
}
