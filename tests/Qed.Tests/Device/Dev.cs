using System.Globalization;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Device;

/// <summary>Sync/async dispatch of the device operations beyond read and write, and the devices the tests run on.</summary>
internal static class Dev
{
    /// <summary>Every (kind, useAsync) pair: a QED image without backing file, one over a raw backing file, and a raw file.</summary>
    public static TheoryData<string, bool> KindsAndModes()
    {
        var data = new TheoryData<string, bool>();
        foreach (string kind in new[] { "qed", "qed-backing", "raw" })
        {
            data.Add(kind, false);
            data.Add(kind, true);
        }
        return data;
    }

    /// <summary>Creates a device of <paramref name="kind"/> with <paramref name="size"/> bytes in <paramref name="dir"/>; the backing file (qed-backing) holds 0xb0 everywhere. Returns the path.</summary>
    public static string Create(TempDirectory dir, string kind, long size)
    {
        switch (kind)
        {
            case "qed":
                Img.Create(dir.File("d.qed"), size);
                return dir.File("d.qed");
            case "qed-backing":
                Img.RawFile(dir.File("base.raw"), size, 0xb0);
                Img.Create(dir.File("d.qed"), size, backing: "base.raw", backingFormat: "raw");
                return dir.File("d.qed");
            default:
                // Sparse, as qemu-img creates it: space is allocated only where written.
                using (var file = new FileStream(dir.File("d.raw"), FileMode.CreateNew))
                {
                    file.SetLength(size);
                }
                return dir.File("d.raw");
        }
    }

    public static string Format(string kind) => kind == "raw" ? "raw" : "qed";

    /// <summary>What an untouched byte reads as.</summary>
    public static byte Untouched(string kind) => kind == "qed-backing" ? (byte)0xb0 : (byte)0;

    public static async Task<BlockDevice> Open(string path, string kind, bool useAsync, bool readOnly = false) =>
        useAsync ? await DiskImage.OpenAsync(path, Format(kind), new ImageOpenOptions { ReadOnly = readOnly })
                 : DiskImage.Open(path, Format(kind), new ImageOpenOptions { ReadOnly = readOnly });

    public static async Task WriteZeroes(BlockDevice device, long offset, long length, WriteZeroesFlags flags, bool useAsync)
    {
        if (useAsync)
        {
            await device.WriteZeroesAsync(offset, length, flags);
        }
        else
        {
            device.WriteZeroes(offset, length, flags);
        }
    }

    public static async Task Discard(BlockDevice device, long offset, long length, bool useAsync)
    {
        if (useAsync)
        {
            await device.DiscardAsync(offset, length);
        }
        else
        {
            device.Discard(offset, length);
        }
    }

    public static async Task Write(BlockDevice device, long offset, byte[] data, WriteFlags flags, bool useAsync)
    {
        if (useAsync)
        {
            await device.WriteAsync(data, offset, flags);
        }
        else
        {
            device.Write(data, offset, flags);
        }
    }

    public static async Task Resize(BlockDevice device, long size, bool useAsync)
    {
        if (useAsync)
        {
            await device.ResizeAsync(size);
        }
        else
        {
            device.Resize(size);
        }
    }

    /// <summary>512-byte blocks the host file system has allocated to <paramref name="path"/> (<c>stat %b</c>).</summary>
    public static long AllocatedBlocks(string path)
    {
        var result = Tools.Run("stat", ["-c", "%b", path]);
        Assert.True(result.ExitCode == 0, result.ToString());
        return long.Parse(result.StdOut.Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>Has qemu-io read <paramref name="length"/> bytes at <paramref name="offset"/> and fail unless all are <paramref name="value"/>.</summary>
    public static void QemuReads(TempDirectory dir, string path, string kind, long offset, long length, byte value) =>
        Tools.QemuIo(dir.Path, Format(kind), path, string.Create(CultureInfo.InvariantCulture, $"read -P 0x{value:x2} {offset} {length}"));

    /// <summary>qemu-img check finds the image clean (QED only; a raw file has nothing to check).</summary>
    public static void QemuCheckClean(TempDirectory dir, string path, string kind)
    {
        if (kind != "raw")
        {
            Interop.QemuOracle.AssertClean(dir.Path, path);
        }
    }
}
