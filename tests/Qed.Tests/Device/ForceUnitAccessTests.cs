using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Device;

/// <summary>Writes and write-zeroes with force unit access end with a flush of what they wrote; plain ones do not.</summary>
public class ForceUnitAccessTests
{
    private const int Cs = 65536;

    internal static async Task<BlockDevice> OpenObserved(string path, string kind, ObservedFileAccessor file, bool useAsync) =>
        kind == "raw" ? new RawImage(file) : await Img.OpenOver(file, useAsync);

    [Theory]
    [MemberData(nameof(Dev.KindsAndModes), MemberType = typeof(Dev))]
    public async Task ForceUnitAccess_FlushesAfterTheWrite(string kind, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, 4 * Img.MiB);
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        await using (var device = await OpenObserved(path, kind, file, useAsync))
        {
            // Allocate first, so that the writes below are in place and flush nothing of their own.
            await Img.Write(device, 0, Img.Fill(2 * Cs, 0x11), useAsync);

            long host = (await Img.Status(device, 0, 4096, useAsync)).HostOffset;
            Assert.True(host >= 0);
            file.Log.Clear();
            await Dev.Write(device, 4096, Img.Fill(4096, 0x22), WriteFlags.None, useAsync);
            Assert.Equal([$"W {host + 4096:x} 1000"], file.Log);

            file.Log.Clear();
            await Dev.Write(device, 8192, Img.Fill(4096, 0x33), WriteFlags.ForceUnitAccess, useAsync);
            Assert.Equal([$"W {host + 8192:x} 1000", "F"], file.Log);

            file.Log.Clear();
            await Dev.WriteZeroes(device, Cs, Cs, WriteZeroesFlags.ForceUnitAccess, useAsync);
            Assert.Equal("F", file.Log[^1]);
            Assert.Contains(file.Log, e => e.StartsWith('W'));

            // An allocating write with force unit access also ends with a flush (of the data and the table).
            file.Log.Clear();
            await Dev.Write(device, 3 * Img.MiB, Img.Fill(4096, 0x44), WriteFlags.ForceUnitAccess, useAsync);
            Assert.Equal("F", file.Log[^1]);
        }
        Dev.QemuReads(dir, path, kind, 4096, 4096, 0x22);
        Dev.QemuReads(dir, path, kind, 8192, 4096, 0x33);
        Dev.QemuReads(dir, path, kind, Cs, Cs, 0);
        Dev.QemuReads(dir, path, kind, 3 * Img.MiB, 4096, 0x44);
        Dev.QemuCheckClean(dir, path, kind);
    }
}
