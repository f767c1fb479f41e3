using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Interop;

/// <summary>Reads a QED file's metadata straight from its bytes, independently of the engine, to check layout facts.</summary>
internal static class OnDisk
{
    public static QedHeader Header(string path)
    {
        byte[] bytes = new byte[64];
        using var stream = File.OpenRead(path);
        stream.ReadExactly(bytes);
        return QedHeader.Parse(bytes);
    }

    public static ulong U64(string path, long offset)
    {
        byte[] bytes = new byte[8];
        using var stream = File.OpenRead(path);
        stream.Seek(offset, SeekOrigin.Begin);
        stream.ReadExactly(bytes);
        return BinaryPrimitives.ReadUInt64LittleEndian(bytes);
    }

    public static ulong L1(string path, int index) => U64(path, (long)Header(path).L1TableOffset + index * 8L);

    /// <summary>The L2 entry of a guest cluster (0 when its L1 entry is empty).</summary>
    public static ulong L2(string path, long guestOffset)
    {
        var h = Header(path);
        var g = new QedGeometry((int)h.ClusterSize, (int)h.TableSize);
        ulong table = L1(path, g.L1Index(guestOffset));
        return table == 0 ? 0 : U64(path, (long)table + g.L2Index(guestOffset) * 8L);
    }

    /// <summary>The L2 entry <paramref name="index"/> of the table under L1 entry <paramref name="l1Index"/>.</summary>
    public static ulong L2(string path, int l1Index, int index)
    {
        ulong table = L1(path, l1Index);
        Assert.NotEqual(0UL, table);
        return U64(path, (long)table + index * 8L);
    }

    public static long Length(string path) => new FileInfo(path).Length;
}

/// <summary>Byte-for-byte comparison of two files (layout identical to QEMU's).</summary>
internal static class FileAssert
{
    public static void Same(string expected, string actual)
    {
        byte[] a = File.ReadAllBytes(expected);
        byte[] b = File.ReadAllBytes(actual);
        int common = a.AsSpan().CommonPrefixLength(b);
        Assert.True(common == a.Length && a.Length == b.Length, string.Create(CultureInfo.InvariantCulture,
            $"{actual} ({b.Length} bytes) differs from {expected} ({a.Length} bytes) at file offset 0x{common:x}"));
    }
}

/// <summary>Assertions that compare what our engine reads with QEMU's view or with a model.</summary>
internal static class InteropAssert
{
    public static QedImage OpenReadOnly(string path, ImageOpenOptions? options = null) =>
        QedImage.Open(path, (options ?? new ImageOpenOptions()) with { ReadOnly = true });

    /// <summary>Fails with the first differing offset.</summary>
    public static void SameBytes(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, long baseOffset, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        int i = expected.CommonPrefixLength(actual);
        if (i < expected.Length)
        {
            int end = i;
            while (end < expected.Length && expected[end] != actual[end])
            {
                end++;
            }
            Assert.Fail(string.Create(CultureInfo.InvariantCulture,
                $"{what}: first difference at guest offset {baseOffset + i} (0x{baseOffset + i:x}): read 0x{actual[i]:x2}, expected 0x{expected[i]:x2}; differing run of {end - i} bytes"));
        }
    }

    /// <summary>Our engine's bytes of a window, read through the sync or the async API.</summary>
    public static byte[] ReadOurs(BlockDevice device, long offset, long length, bool useAsync)
    {
        byte[] bytes = new byte[length];
        if (useAsync)
        {
            device.ReadAsync(bytes, offset).AsTask().GetAwaiter().GetResult();
        }
        else
        {
            device.Read(bytes, offset);
        }
        return bytes;
    }

    /// <summary>
    /// Flattens <paramref name="image"/> with qemu-img, reads the whole disk with our engine (sync; for disks
    /// up to 64 MiB also async and through <see cref="DeviceDigest"/>), checks both equal QEMU's bytes and returns the sha256 of the disk.
    /// </summary>
    public static string ReadsLikeQemu(string dir, string image)
    {
        string flat = QemuOracle.Flatten(dir, image);
        try
        {
            using var device = OpenReadOnly(Path.Combine(dir, image));
            Assert.Equal(new FileInfo(flat).Length, device.Size);
            string sync = CompareWithFile(device, flat, useAsync: false, image);
            if (device.Size <= 64 * Op.M)
            {
                Assert.Equal(sync, CompareWithFile(device, flat, useAsync: true, image));
            }
            Assert.Equal(Tools.Sha256OfFile(flat), sync);
            if (device.Size <= 64 * Op.M)
            {
                Assert.Equal(sync, DeviceDigest.Sha256(device));
            }
            return sync;
        }
        finally
        {
            File.Delete(flat);
        }
    }

    /// <summary>Our engine reads exactly the model (whole disk).</summary>
    public static void ReadsLikeModel(BlockDevice device, IGuestView model, string what)
    {
        Assert.Equal(model.Size, device.Size);
        const int Chunk = 1 << 20;
        byte[] expected = new byte[Chunk];
        for (long offset = 0; offset < model.Size; offset += Chunk)
        {
            int n = (int)Math.Min(Chunk, model.Size - offset);
            model.Read(expected.AsSpan(0, n), offset);
            byte[] actual = ReadOurs(device, offset, n, useAsync: (offset / Chunk) % 2 == 1);
            SameBytes(expected.AsSpan(0, n), actual, offset, what);
        }
    }

    /// <summary>QEMU's flatten of an image equals the model (whole disk); returns the digest.</summary>
    public static string QemuReadsLikeModel(string dir, string image, IGuestView model)
    {
        string flat = QemuOracle.Flatten(dir, image);
        try
        {
            Assert.Equal(model.Size, new FileInfo(flat).Length);
            using var stream = File.OpenRead(flat);
            const int Chunk = 1 << 20;
            byte[] expected = new byte[Chunk];
            byte[] actual = new byte[Chunk];
            for (long offset = 0; offset < model.Size; offset += Chunk)
            {
                int n = (int)Math.Min(Chunk, model.Size - offset);
                model.Read(expected.AsSpan(0, n), offset);
                stream.ReadExactly(actual, 0, n);
                SameBytes(expected.AsSpan(0, n), actual.AsSpan(0, n), offset, $"QEMU's read of {image}");
            }
            return Tools.Sha256OfFile(flat);
        }
        finally
        {
            File.Delete(flat);
        }
    }

    private static string CompareWithFile(BlockDevice device, string flat, bool useAsync, string what)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var stream = File.OpenRead(flat);
        const int Chunk = 1 << 20;
        byte[] expected = new byte[Chunk];
        for (long offset = 0; offset < device.Size; offset += Chunk)
        {
            int n = (int)Math.Min(Chunk, device.Size - offset);
            stream.ReadExactly(expected, 0, n);
            byte[] actual = ReadOurs(device, offset, n, useAsync);
            SameBytes(expected.AsSpan(0, n), actual, offset, $"our {(useAsync ? "async" : "sync")} read of {what} vs qemu-img convert");
            hash.AppendData(actual);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}

/// <summary>Compares our allocation status with <c>qemu-img map --output=json</c>.</summary>
internal static class StatusAssert
{
    /// <summary>
    /// For every extent QEMU maps, our <see cref="BlockDevice.GetStatus"/> of the top image must say the same:
    /// depth-0 data ⇒ <see cref="BlockState.Data"/> at the same host offset; depth-0 zero ⇒ <see cref="BlockState.Zero"/>;
    /// anything found deeper in the chain, or not present at all ⇒ <see cref="BlockState.Unallocated"/>.
    /// </summary>
    public static void LikeQemuMap(string dir, string image)
    {
        var map = QemuOracle.Map(dir, image);
        using var device = InteropAssert.OpenReadOnly(Path.Combine(dir, image));
        Assert.Equal(device.Size, map.Count == 0 ? 0 : map[^1].End);
        foreach (var extent in map)
        {
            var expected = extent.Depth == 0 && extent.Data ? BlockState.Data
                : extent.Depth == 0 && extent.Present && extent.Zero ? BlockState.Zero
                : BlockState.Unallocated;
            for (long offset = extent.Start; offset < extent.End;)
            {
                var status = device.GetStatus(offset, extent.End - offset);
                Assert.True(status.State == expected && status.Offset == offset && status.Length > 0,
                    $"{image}: our status at 0x{offset:x} is {status}, qemu-img map says {extent}");
                if (expected == BlockState.Data)
                {
                    Assert.Equal(extent.Offset!.Value + (offset - extent.Start), status.HostOffset);
                }
                offset += Math.Min(status.Length, extent.End - offset);
            }
        }
    }
}
