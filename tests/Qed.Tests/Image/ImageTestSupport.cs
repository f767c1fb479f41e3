using System.Buffers.Binary;
using Qed.Backing;
using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>Shared helpers of the image tests: sync/async dispatch, on-disk inspection and fault-observing file wrappers.</summary>
internal static class Img
{
    public const int KiB = 1024;
    public const int MiB = 1024 * 1024;

    /// <summary>The geometries every round-trip test covers: 4K/ts=1, 4K/ts=2, 64K/ts=4 (default), 1M/ts=16.</summary>
    public static TheoryData<int, int, bool> GeometriesAndModes()
    {
        var data = new TheoryData<int, int, bool>();
        foreach (var (cs, ts) in new[] { (4096, 1), (4096, 2), (65536, 4), (1 << 20, 16) })
        {
            data.Add(cs, ts, false);
            data.Add(cs, ts, true);
        }
        return data;
    }

    public static void Create(string path, long size, int clusterSize = 65536, int tableSize = 4, string? backing = null, string? backingFormat = null) =>
        QedImage.Create(path, new QedCreateOptions { Size = size, ClusterSize = clusterSize, TableSize = tableSize, BackingFile = backing, BackingFormat = backingFormat });

    public static async Task<QedImage> Open(string path, bool useAsync, bool readOnly = false, ImageOpenOptions? options = null)
    {
        options ??= new ImageOpenOptions();
        options = options with { ReadOnly = readOnly || options.ReadOnly };
        return useAsync ? await QedImage.OpenAsync(path, options) : QedImage.Open(path, options);
    }

    public static async Task Close(BlockDevice device, bool useAsync)
    {
        if (useAsync)
        {
            await device.DisposeAsync();
        }
        else
        {
            device.Dispose();
        }
    }

    public static async Task<byte[]> Read(BlockDevice device, long offset, int length, bool useAsync)
    {
        byte[] buffer = new byte[length];
        if (useAsync)
        {
            await device.ReadAsync(buffer, offset);
        }
        else
        {
            device.Read(buffer, offset);
        }
        return buffer;
    }

    public static byte[] ReadSync(BlockDevice device, long offset, int length)
    {
        byte[] buffer = new byte[length];
        device.Read(buffer, offset);
        return buffer;
    }

    public static async Task Write(BlockDevice device, long offset, byte[] data, bool useAsync)
    {
        if (useAsync)
        {
            await device.WriteAsync(data, offset);
        }
        else
        {
            device.Write(data, offset);
        }
    }

    public static Task Write(BlockDevice device, long offset, int length, byte fill, bool useAsync) =>
        Write(device, offset, Fill(length, fill), useAsync);

    public static async Task WriteZeroes(BlockDevice device, long offset, long length, bool useAsync)
    {
        if (useAsync)
        {
            await device.WriteZeroesAsync(offset, length);
        }
        else
        {
            device.WriteZeroes(offset, length);
        }
    }

    public static async Task<BlockStatus> Status(BlockDevice device, long offset, long length, bool useAsync) =>
        useAsync ? await device.GetStatusAsync(offset, length) : device.GetStatus(offset, length);

    public static async Task Flush(BlockDevice device, bool useAsync)
    {
        if (useAsync)
        {
            await device.FlushAsync();
        }
        else
        {
            device.Flush();
        }
    }

    public static byte[] Fill(int length, byte value)
    {
        byte[] data = new byte[length];
        data.AsSpan().Fill(value);
        return data;
    }

    public static byte[] RandomBytes(Random random, int length)
    {
        byte[] data = new byte[length];
        random.NextBytes(data);
        return data;
    }

    /// <summary>Asserts that every byte of <paramref name="data"/> is <paramref name="value"/>, naming the first one that is not.</summary>
    public static void AllBytes(byte value, ReadOnlySpan<byte> data, string what = "")
    {
        int bad = data.IndexOfAnyExcept(value);
        Assert.True(bad < 0, $"{what}: byte {bad} is 0x{(bad < 0 ? 0 : data[bad]):x2}, expected 0x{value:x2}");
    }

    /// <summary>Reads bytes of a file that may be open elsewhere.</summary>
    public static byte[] FileBytes(string path, long offset, int length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        byte[] buffer = new byte[length];
        stream.Seek(offset, SeekOrigin.Begin);
        int done = 0;
        while (done < length)
        {
            int n = stream.Read(buffer, done, length - done);
            if (n == 0)
            {
                break;
            }
            done += n;
        }
        return buffer;
    }

    public static ulong FileU64(string path, long offset) => BinaryPrimitives.ReadUInt64LittleEndian(FileBytes(path, offset, 8));

    public static QedHeader FileHeader(string path) => QedHeader.Parse(FileBytes(path, 0, HeaderLayout.Size));

    public static long FileLength(string path) => new FileInfo(path).Length;

    /// <summary>Writes a header into an existing file, leaving the rest alone.</summary>
    public static void WriteHeader(string path, QedHeader header)
    {
        byte[] bytes = new byte[HeaderLayout.Size];
        header.WriteTo(bytes);
        Tools.Poke(path, 0, bytes);
    }

    /// <summary>Creates a raw file of <paramref name="length"/> bytes filled with <paramref name="fill"/>.</summary>
    public static void RawFile(string path, long length, byte fill)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        byte[] chunk = Fill((int)Math.Min(length, MiB), fill);
        for (long done = 0; done < length; done += chunk.Length)
        {
            stream.Write(chunk, 0, (int)Math.Min(chunk.Length, length - done));
        }
    }

    /// <summary>Opens a QED image over a custom <see cref="FileAccessor"/> (to observe or fail its I/O).</summary>
    public static async Task<QedImage> OpenOver(FileAccessor file, bool useAsync, ImageOpenOptions? options = null) =>
        await QedImage.OpenCoreAsync(file, options ?? new ImageOpenOptions(), BackingChain.Start(file.Path), useAsync, CancellationToken.None);

    /// <summary>Runs <paramref name="body"/> and fails if it does not finish in time (corrupt images must fail, not hang).</summary>
    public static async Task<T> WithTimeout<T>(Func<Task<T>> body, int seconds = 10) =>
        await Task.Run(body).WaitAsync(TimeSpan.FromSeconds(seconds));
}

/// <summary>A <see cref="FileAccessor"/> that forwards to another one and lets a test observe or fail each call.</summary>
internal sealed class ObservedFileAccessor : FileAccessor
{
    private readonly FileAccessor _inner;

    public ObservedFileAccessor(FileAccessor inner)
    {
        _inner = inner;
    }

    /// <summary>Called before each write with its offset and length; may throw to fail the write.</summary>
    public Action<long, int>? BeforeWrite { get; set; }

    /// <summary>Called before each flush; may throw.</summary>
    public Action? BeforeFlush { get; set; }

    /// <summary>Every call in order: "W offset length", "F", "R offset length".</summary>
    public List<string> Log { get; } = [];

    public override string Path => _inner.Path;

    public override bool IsReadOnly => _inner.IsReadOnly;

    public override long GetLength() => _inner.GetLength();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        lock (Log)
        {
            Log.Add($"R {offset:x} {buffer.Length:x}");
        }
        return _inner.ReadAsync(buffer, offset, useAsync, cancellationToken);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        lock (Log)
        {
            Log.Add($"W {offset:x} {buffer.Length:x}");
        }
        BeforeWrite?.Invoke(offset, buffer.Length);
        return _inner.WriteAsync(buffer, offset, useAsync, cancellationToken);
    }

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken)
    {
        lock (Log)
        {
            Log.Add("F");
        }
        BeforeFlush?.Invoke();
        return _inner.FlushAsync(useAsync, cancellationToken);
    }

    public override void SetLength(long length) => _inner.SetLength(length);

    public override void Dispose() => _inner.Dispose();
}
