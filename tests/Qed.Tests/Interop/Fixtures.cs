using System.Globalization;
using Qed.Tests.Infrastructure;
using static Qed.Tests.Interop.Op;

namespace Qed.Tests.Interop;

/// <summary>
/// The recipes of QED-FORMAT.md §13, written once and replayed by either writer (QEMU or our engine).
/// Every method builds its fixture in <c>dir</c> (backing files included) and returns the image's name.
/// Steps that are not guest writes (truncate, resize, rebase, hand-made headers) are done the same way
/// for both writers.
/// </summary>
internal static class Fixtures
{
    /// <summary>sha256 of the virtual disk of each fixture, from §13 (QEMU's digest where marked).</summary>
    public static class Digest
    {
        public const string F01 = "3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351";
        public const string F02 = "00cd3d5d8f79b7f8fd5d8ec43b584f12b84abc7757d5ddafffa90bb165127208";
        public const string F03 = "2abd0ab2b6ae392a6abde6238c48591fec5db55a5b6321e4b0c356bb2a947694";
        public const string F04 = "a2fc800650c9c99fc5e0f028c7b5e45f95a9a57e148e92abe4f188cadda3c217";
        public const string F05 = "d743738fcdab7b742f80137e61445e2cecb5035fa746e17ca6fd3e7f6398b61c";
        public const string F07 = "71dd67437e01301bea79cfc97f5e694f190d187b6994e81247b918add0f80b6f";
        public const string F08 = "d09687aabecfa9ee467bd46bf4b74bd740d4e3741b20e3214b39dee421e3db15";
        public const string F09 = "d185070e8bd87833c8e2fcc33ac322d424fb919399ce4568b6a83c2df65c61e9";
        public const string F10 = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
        /// <summary>The spec's F11 (zero-fill around a partial write into a zero cluster).</summary>
        public const string F11Spec = "7445f92e5501547f6352468790b5ca687fa4a3ad4254c00c7fa082c24372ba31";
        /// <summary>What QEMU 7.2 writes for F11 (backing data copied into the zero cluster, §5.5).</summary>
        public const string F11Qemu = "d418bf11b749fe5bffa015574d59d28313526f1ac3e43463baedc364b04b5463";
        public const string F12 = "735a186dd48b82e734f565268dd105fa655327a5993d541328b7cd9f828c2f28";
        public const string F24 = "44adec00911f08d3edfe865dfd67dd7a32a6a501c672f63c433d98f91b9aecec";
        public const string F25 = "268dca61dd255595c7d5f115de869b83d1aa55333d12f9f86c92c8846bb6c315";
        /// <summary>The correct F28 (4 096 clusters allocated).</summary>
        public const string F28Correct = "af3d6a16f2c0984d642b1e043da9fdea5d974136924f9eee15485476ed30f5e0";
        /// <summary>What QEMU 7.2 writes for F28 (over-allocation bug, §5.3).</summary>
        public const string F28Qemu = "880924d65835f9769dd78d9e9f854ead5a69fde1bd6ec429c572d64b5be9ed72";
        public const string F30Size1000 = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
        public const string F30Size0 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        public const string F31 = "c05a510e3b192c6de24f1b2a0437166e468ec0d503b36a6ffcb13186bd680e69";
        public const string F32 = "1e9e52ef8cad9e35d49398f49c80e6fdaac02a0317546b921cffa892befd2b5e";
    }

    public const string F07Base = "f07-base.raw";

    /// <summary>The shared backing file: 4 MiB of 0xb0.</summary>
    public static string MakeF07Base(ImageWriter w, string dir)
    {
        if (!File.Exists(Path.Combine(dir, F07Base)))
        {
            w.CreateRaw(dir, F07Base, 4 * M);
            w.RawSession(dir, F07Base, W(0xb0, 0, 4 * M));
        }
        return F07Base;
    }

    public static string F01(ImageWriter w, string dir)
    {
        w.Create(dir, "f01-empty.qed", 64 * M);
        return "f01-empty.qed";
    }

    public static string F02(ImageWriter w, string dir)
    {
        w.Create(dir, "f02.qed", 16 * M, clusterSize: 4096, tableSize: 2);
        w.Session(dir, "f02.qed", W(0x11, 0, 4 * K), W(0x22, 6 * K, 1 * K), W(0x33, 1 * M, 12 * K), W(0x44, 16380 * K, 4 * K));
        return "f02.qed";
    }

    public static string F03(ImageWriter w, string dir)
    {
        w.Create(dir, "f03.qed", 1 * G, tableSize: 16);
        w.Session(dir, "f03.qed", W(0x55, 0, 64 * K), W(0x66, 512 * M, 100 * K));
        return "f03.qed";
    }

    public static string F04(ImageWriter w, string dir)
    {
        w.Create(dir, "f04.qed", 64 * M, clusterSize: 1 << 20, tableSize: 2);
        w.Session(dir, "f04.qed", W(0x77, 3 * M, 4 * K));
        return "f04.qed";
    }

    public static string F05(ImageWriter w, string dir)
    {
        w.Create(dir, "f05.qed", 64 * M, clusterSize: 4096, tableSize: 2);
        w.Session(dir, "f05.qed", W(0x01, 0, 8 * K), W(0x02, 5 * M, 4 * K), W(0x03, 13 * M, 4 * K), W(0x04, 63 * M, 4 * K), W(0x05, 4092 * K, 8 * K));
        return "f05.qed";
    }

    public static string F06(ImageWriter w, string dir)
    {
        w.Create(dir, "f06.qed", 16 * M, clusterSize: 4096, tableSize: 1);
        return "f06.qed";
    }

    public static string F07(ImageWriter w, string dir)
    {
        MakeF07Base(w, dir);
        w.Create(dir, "f07-cow.qed", null, backing: F07Base, backingFormat: "raw");
        w.Session(dir, "f07-cow.qed", W(0xc1, 4 * K, 4 * K), W(0xc2, 130 * K, 2 * K), W(0xc3, 1 * M, 64 * K));
        return "f07-cow.qed";
    }

    public static string F08(ImageWriter w, string dir)
    {
        w.Create(dir, "f08-base.qed", 2 * M);
        w.Session(dir, "f08-base.qed", W(0xa0, 0, 1 * M));
        w.Create(dir, "f08-mid.qed", null, clusterSize: 4096, backing: "f08-base.qed", backingFormat: "qed");
        w.Session(dir, "f08-mid.qed", W(0xa1, 64 * K, 8 * K), Z(128 * K, 64 * K));
        w.Create(dir, "f08-top.qed", null, clusterSize: 16384, tableSize: 2, backing: "f08-mid.qed", backingFormat: "qed");
        w.Session(dir, "f08-top.qed", W(0xa2, 68 * K, 1 * K), W(0xa3, 1536 * K, 16 * K));
        return "f08-top.qed";
    }

    public static string F09(ImageWriter w, string dir)
    {
        MakeF07Base(w, dir);
        w.Create(dir, "f09.qed", null, backing: F07Base, backingFormat: "raw");
        w.Session(dir, "f09.qed", Z(0, 128 * K), Z(1 * M, 64 * K), Z(2 * M, 4 * K));
        return "f09.qed";
    }

    public static string F10(ImageWriter w, string dir)
    {
        w.Create(dir, "f10.qed", 1 * M);
        w.Session(dir, "f10.qed", W(0x99, 0, 64 * K), Z(0, 64 * K));
        return "f10.qed";
    }

    public static string F11(ImageWriter w, string dir)
    {
        MakeF07Base(w, dir);
        w.Create(dir, "f11.qed", null, backing: F07Base, backingFormat: "raw");
        w.Session(dir, "f11.qed", Z(0, 64 * K));
        w.Session(dir, "f11.qed", W(0xd1, 4 * K, 4 * K));
        return "f11.qed";
    }

    public static string F12(ImageWriter w, string dir)
    {
        w.CreateRaw(dir, "f12-short.raw", 1 * M);
        w.RawSession(dir, "f12-short.raw", W(0xe0, 0, 1 * M));
        Truncate(dir, "f12-short.raw", 1_000_000);
        w.Create(dir, "f12.qed", 4 * M, backing: "f12-short.raw", backingFormat: "raw");
        w.Session(dir, "f12.qed", W(0xe1, 960 * K, 4 * K));
        return "f12.qed";
    }

    public static string F24(ImageWriter w, string dir)
    {
        w.Create(dir, "f24.qed", 16 * M);
        w.Session(dir, "f24.qed", W(0x24, 0, 64 * K));
        Truncate(dir, "f24.qed", OnDisk.Length(Path.Combine(dir, "f24.qed")) + 1000);
        return "f24.qed";
    }

    /// <summary>The hand-made header_size = 2 image of F25, before its write (identical for both writers).</summary>
    public static void MakeF25Header(string dir, string name)
    {
        string path = Path.Combine(dir, name);
        byte[] header =
        [
            (byte)'Q', (byte)'E', (byte)'D', 0,
            0x00, 0x00, 0x01, 0x00, // cluster_size 0x10000
            0x04, 0x00, 0x00, 0x00, // table_size 4
            0x02, 0x00, 0x00, 0x00, // header_size 2
            0x05, 0, 0, 0, 0, 0, 0, 0, // features BACKING_FILE | NO_PROBE
            0, 0, 0, 0, 0, 0, 0, 0, // compat
            0, 0, 0, 0, 0, 0, 0, 0, // autoclear
            0x00, 0x00, 0x02, 0x00, 0, 0, 0, 0, // l1_table_offset 0x20000
            0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, // image_size 16 MiB
            0x64, 0x00, 0x01, 0x00, // backing_filename_offset 0x10064
            0x0c, 0x00, 0x00, 0x00, // backing_filename_size 12
        ];
        Assert.Equal(64, header.Length);
        File.WriteAllBytes(path, header);
        Tools.Poke(path, 0x10064, "f07-base.raw"u8.ToArray());
        Truncate(dir, name, 0x60000);
    }

    public static string F25(ImageWriter w, string dir)
    {
        MakeF07Base(w, dir);
        MakeF25Header(dir, "f25.qed");
        w.Session(dir, "f25.qed", W(0x25, 0, 4 * K));
        return "f25.qed";
    }

    public static string F28(ImageWriter w, string dir)
    {
        w.CreateRaw(dir, "f28-base.raw", 64 * M);
        w.RawSession(dir, "f28-base.raw", W(0x28, 0, 64 * M));
        w.Create(dir, "f28.qed", null, clusterSize: 4096, tableSize: 16, backing: "f28-base.raw", backingFormat: "raw");
        w.Session(dir, "f28.qed", W(0x29, 0, 16 * M));
        return "f28.qed";
    }

    public static string F30(ImageWriter w, string dir, long size)
    {
        string name = string.Create(CultureInfo.InvariantCulture, $"f30-size{size}.qed");
        w.Create(dir, name, size);
        return name;
    }

    public static string F31(ImageWriter w, string dir)
    {
        w.Create(dir, "f31.qed", 1 * M);
        w.Session(dir, "f31.qed", W(0x31, 0, 1 * M));
        Tools.QemuImg(dir, "resize", "-f", "qed", "f31.qed", "3M");
        return "f31.qed";
    }

    public static string F32(ImageWriter w, string dir)
    {
        MakeF07Base(w, dir);
        w.Create(dir, "f32.qed", null, backing: F07Base, backingFormat: "raw");
        w.Session(dir, "f32.qed", W(0x32, 64 * K, 4 * K));
        Tools.QemuImg(dir, "rebase", "-f", "qed", "-u", "-b", "", "f32.qed");
        return "f32.qed";
    }

    /// <summary><c>truncate -s</c>.</summary>
    public static void Truncate(string dir, string name, long length)
    {
        using var stream = new FileStream(Path.Combine(dir, name), FileMode.Open, FileAccess.Write);
        stream.SetLength(length);
    }
}
