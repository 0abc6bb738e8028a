/**
 * Where each dataset comes from: official URLs, the SHA-256 digests pinned for them, and
 * system packages that install them.
 *
 * Digests (all of the exact files served at the official locations):
 * - Fashion-MNIST: the SHA-256 values published for the official files (they match the MD5s in
 *   the project's README). Verified on this machine: Debian's `dataset-fashion-mnist` files
 *   carry the same deflate streams, only with the gzip header's file name dropped and its
 *   time stamp rewritten; restoring the original header (name, mtime 1504176606 for the
 *   training files and 1504176627 for the test files) reproduces the official files, sizes
 *   (26421880, 29515, 4422102, 5148 bytes), MD5s and these SHA-256s byte for byte
 *   (test/data_download_test.ts repeats that check).
 * - MNIST: the SHA-256 values widely published for the original LeCun files, which the
 *   ossci-datasets mirror serves unchanged (TensorFlow Datasets and others pin the same).
 * - CIFAR-10 / CIFAR-100 binary archives: the SHA-256 values published for the Toronto
 *   archives (170052171 bytes for CIFAR-10; official MD5 c32a1d4ab5d03f1284b67883e8d87530),
 *   pinned identically by several independent loaders. These could not be checked against a
 *   local copy here.
 */
import type { DatasetName } from "./dataset.ts";

/** One file to download: its name under the base URL and its pinned SHA-256 (hex). */
export interface RemoteFile {
  /** File name, appended to the source's `baseUrl`. */
  file: string;
  /** Lower-case hex SHA-256; `null` means no verified digest is pinned (download refused). */
  sha256: string | null;
  /** Expected size in bytes, when known (informational). */
  size?: number;
}

/** How to obtain one dataset. */
export interface DatasetSource {
  /** The dataset's name (its key in {@linkcode DATASET_SOURCES}). */
  name: DatasetName;
  /** Human-readable name for messages. */
  title: string;
  /** Data format. */
  format: "idx" | "cifar10" | "cifar100";
  /** Base URL; a file's URL is `baseUrl + file`. */
  baseUrl: string;
  /** Files to download (for CIFAR, the one `.tar.gz` archive). */
  files: RemoteFile[];
  /** System directories that may hold the files (e.g. a Debian package's). */
  systemDirs: string[];
  /** Install hint, e.g. an apt-get command, if a system package exists. */
  packageHint?: string;
  /** Number of classes. */
  numClasses: number;
  /** The dataset's name of each class, by label. */
  classNames: readonly string[];
}

const CIFAR100_CLASSES = (
  "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus " +
  "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch " +
  "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo " +
  "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse " +
  "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy " +
  "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper " +
  "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television " +
  "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split(" ");

/** The IDX file names of MNIST-style datasets (stored gzip-compressed). */
export const IDX_FILES = {
  trainImages: "train-images-idx3-ubyte",
  trainLabels: "train-labels-idx1-ubyte",
  testImages: "t10k-images-idx3-ubyte",
  testLabels: "t10k-labels-idx1-ubyte",
} as const;

/** The built-in sources. */
export const DATASET_SOURCES: Record<DatasetName, DatasetSource> = {
  "fashion-mnist": {
    name: "fashion-mnist",
    title: "Fashion-MNIST",
    format: "idx",
    baseUrl: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    files: [
      {
        file: "train-images-idx3-ubyte.gz",
        sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        size: 26421880,
      },
      {
        file: "train-labels-idx1-ubyte.gz",
        sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        size: 29515,
      },
      {
        file: "t10k-images-idx3-ubyte.gz",
        sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        size: 4422102,
      },
      {
        file: "t10k-labels-idx1-ubyte.gz",
        sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        size: 5148,
      },
    ],
    systemDirs: ["/usr/share/datasets/fashion-mnist"],
    packageHint: "apt-get install dataset-fashion-mnist",
    numClasses: 10,
    classNames: [
      "T-shirt/top",
      "Trouser",
      "Pullover",
      "Dress",
      "Coat",
      "Sandal",
      "Shirt",
      "Sneaker",
      "Bag",
      "Ankle boot",
    ],
  },
  mnist: {
    name: "mnist",
    title: "MNIST",
    format: "idx",
    baseUrl: "https://ossci-datasets.s3.amazonaws.com/mnist/",
    files: [
      {
        file: "train-images-idx3-ubyte.gz",
        sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        size: 9912422,
      },
      {
        file: "train-labels-idx1-ubyte.gz",
        sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        size: 28881,
      },
      {
        file: "t10k-images-idx3-ubyte.gz",
        sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        size: 1648877,
      },
      {
        file: "t10k-labels-idx1-ubyte.gz",
        sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        size: 4542,
      },
    ],
    systemDirs: [],
    numClasses: 10,
    classNames: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
  },
  cifar10: {
    name: "cifar10",
    title: "CIFAR-10",
    format: "cifar10",
    baseUrl: "https://www.cs.toronto.edu/~kriz/",
    files: [{
      file: "cifar-10-binary.tar.gz",
      sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
      size: 170052171,
    }],
    systemDirs: [],
    numClasses: 10,
    classNames: [
      "airplane",
      "automobile",
      "bird",
      "cat",
      "deer",
      "dog",
      "frog",
      "horse",
      "ship",
      "truck",
    ],
  },
  cifar100: {
    name: "cifar100",
    title: "CIFAR-100",
    format: "cifar100",
    baseUrl: "https://www.cs.toronto.edu/~kriz/",
    files: [{
      file: "cifar-100-binary.tar.gz",
      sha256: "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
    }],
    systemDirs: [],
    numClasses: 100,
    classNames: CIFAR100_CLASSES,
  },
};
