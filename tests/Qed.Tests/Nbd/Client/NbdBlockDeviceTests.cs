using Qed.Extents;
using Qed.Formats;
using Qed.Image;
using Qed.IO;
using Qed.Nbd.Client;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Client;

/// <summary>
/// NBD URIs opened through <see cref="DiskImage"/> (a raw device over our client), against qemu-nbd: reads equal qemu's
/// flattening, the extent map equals qemu-img map, writes land, a QED overlay can name an NBD export as its backing
/// file, and formats other than raw are refused.
/// </summary>
public sealed class NbdBlockDeviceTests
{
    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task An_nbd_uri_opens_as_a_raw_device_with_extents(string server)
    {
        using var dir = new TempDirectory();
        string image = NbdClientTests.MakeLayeredImage(dir);
        string expected = Tools.QemuFlattenDigest(dir.Path, image);
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: true);
        string uri = served.Uri();

        using (var device = DiskImage.Open(uri, null, new ImageOpenOptions { ReadOnly = true }))
        {
            Assert.Equal("raw", device.FormatName);
            Assert.Equal(uri, device.FileName);
            Assert.True(device.IsReadOnly);
            Assert.Null(device.Backing);
            Assert.Equal(BlockDeviceCapabilities.Extents, device.Capabilities);
            Assert.Same(ImageFormats.Raw, ImageFormats.Of(device));
            Assert.Equal(expected, DeviceDigest.Sha256(device, chunk: 3 << 20));

            // The chain-flattened map over NBD: zero ranges read as zeros, data is data, as qemu-img map says.
            var map = new List<(long Start, long Length, bool Zero, bool Data)>();
            foreach (var extent in ExtentMap.Enumerate(device))
            {
                NbdClientTests.Add(map, (extent.Offset, extent.Length, extent.ReadsAsZeros, extent.IsData));
            }
            Assert.Equal(NbdClientTests.QemuMap(dir.Path, uri), map);
            // One answer serves the walk: the server sends many extents per BLOCK_STATUS.
            long requests = ((NbdBlockDevice)device).Client.BlockStatusRequests;
            Assert.True(requests < map.Count, $"{requests} BLOCK_STATUS requests for {map.Count} extents");
        }

        await using (var device = await DiskImage.OpenAsync(uri, "raw", new ImageOpenOptions { ReadOnly = true }))
        {
            var buffer = new byte[4096];
            await device.ReadAsync(buffer, 2L << 20);
            Assert.All(buffer, b => Assert.Equal(0x22, b));
            var status = await device.GetStatusAsync(4L << 20, 1L << 20);
            Assert.Equal(BlockState.Zero, status.State);
        }

        var refused = Assert.Throws<QedUnsupportedException>(() => DiskImage.Open(uri, "qed", new ImageOpenOptions { ReadOnly = true }));
        Assert.Contains("an NBD export opens only as raw", refused.Message, StringComparison.Ordinal);
        Assert.Throws<QedUnsupportedException>(() => ImageFormats.Qed.Open(uri, new ImageOpenOptions { ReadOnly = true }));
        var readOnly = Assert.Throws<QedReadOnlyException>(() => DiskImage.Open(uri));
        Assert.Contains("Permission denied", readOnly.Message, StringComparison.Ordinal);
        var missing = Assert.Throws<NbdException>(() => DiskImage.Open(served.Uri("nope"), null, new ImageOpenOptions { ReadOnly = true }));
        Assert.Contains("export 'nope' is not available", missing.Message, StringComparison.Ordinal);
        var bad = Assert.ThrowsAny<QedException>(() => DiskImage.Open("nbd+vsock://2/x"));
        Assert.Contains("the transport 'vsock' is not supported", bad.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Writes_through_the_device_land_in_the_export(string server)
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "8M");
        var model = new byte[8 << 20];
        await using (var served = ServedImage.Start(server, dir.Path, image, readOnly: false))
        {
            await using var device = await DiskImage.OpenAsync(served.Uri());
            Assert.False(device.IsReadOnly);
            Assert.Equal(BlockState.Zero, device.GetStatus(0, device.Size).State); // held until a change
            Assert.Equal(BlockDeviceCapabilities.Write | BlockDeviceCapabilities.ZeroFast | BlockDeviceCapabilities.Discard | BlockDeviceCapabilities.Extents, device.Capabilities);

            var data = new byte[3 << 20];
            new Random(1).NextBytes(data);
            device.Write(data, 1 << 20);
            data.CopyTo(model, 1 << 20);
            await device.WriteAsync(data.AsMemory(0, 65536), 6 << 20, WriteFlags.ForceUnitAccess);
            data.AsSpan(0, 65536).CopyTo(model.AsSpan(6 << 20));
            device.WriteZeroes(2 << 20, 65536);
            model.AsSpan(2 << 20, 65536).Clear();
            await device.WriteZeroesAsync(3 << 20, 512 * 1024, WriteZeroesFlags.MayUnmap | WriteZeroesFlags.ForceUnitAccess);
            model.AsSpan(3 << 20, 512 * 1024).Clear();
            device.Discard(7 << 20, 65536); // advisory on an unwritten range: it reads as zeros either way
            device.Flush();
            Assert.Equal(BlockState.Data, device.GetStatus(6 << 20, 65536).State);

            var back = new byte[model.Length];
            device.Read(back, 0);
            Assert.True(back.AsSpan().SequenceEqual(model), "the device reads back what was written");
            Assert.Equal(BlockState.Zero, device.GetStatus(0, 1 << 20).State);
            Assert.Equal(BlockState.Data, device.GetStatus(1 << 20, 1 << 20).State);
        }
        string reference = dir.File("model.raw");
        await File.WriteAllBytesAsync(reference, model);
        var compare = Tools.QemuImgRaw(dir.Path, "compare", "-f", "qed", "-F", "raw", image, reference);
        Assert.True(compare.ExitCode == 0, compare.ToString());
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task A_qed_overlay_can_have_an_nbd_export_as_backing_file(string server)
    {
        using var dir = new TempDirectory();
        string baseImage = NbdClientTests.MakeLayeredImage(dir);
        await using var served = ServedImage.Start(server, dir.Path, baseImage, readOnly: true);
        string uri = served.Uri();
        string overlay = dir.File("sub/overlay.qed"); // a relative resolution would put the URI under sub/
        Directory.CreateDirectory(dir.File("sub"));
        ImageFormats.Qed.Create(overlay, new ImageCreateOptions { Size = 16L << 20, BackingFile = uri, BackingFormat = "raw" });

        await using (var device = await DiskImage.OpenAsync(overlay))
        {
            Assert.NotNull(device.Backing);
            Assert.Equal(uri, device.Backing!.FileName);
            Assert.Equal(uri, ImageFormats.Of(device).Describe(device).BackingFilePath);
            await device.WriteAsync(Enumerable.Repeat((byte)0x77, 65536).ToArray(), 2L << 20);
            var buffer = new byte[4096];
            await device.ReadAsync(buffer, 0); // from the backing export (the raw base under the served QED)
            Assert.All(buffer, b => Assert.Equal(0x11, b));
            await device.ReadAsync(buffer, (2L << 20) + 65536); // copy-on-write neighbour from the export
            Assert.All(buffer, b => Assert.Equal(0x22, b));
        }
        // qemu reads the same overlay through its own NBD client.
        var expected = Tools.QemuFlattenDigest(dir.Path, overlay);
        using var reopened = DiskImage.Open(overlay, null, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(expected, DeviceDigest.Sha256(reopened));
        Assert.Equal(16L << 20, reopened.Size);
        Assert.Contains("\"backing-filename\": \"" + uri + "\"", Tools.QemuImg(dir.Path, "info", "--output=json", overlay).StdOut, StringComparison.Ordinal);
    }
}
